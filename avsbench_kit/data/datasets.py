"""The dataset registry: each entry says where the official release comes from, what layout it
has, and which builder turns that layout into a manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avsbench_kit.errors import DataError
from avsbench_kit.home import prepared_dir, raw_dir
from avsbench_kit.registry import Registry


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    task: str  # "s4" | "ms3" | "avss" | "refavs"
    splits: tuple[str, ...]
    builder: str  # "module:function" (root: Path, checksum: bool) -> ManifestBuild
    marker: str  # a file whose presence identifies the dataset root
    subdir: str  # the conventional name of the root folder inside a parent (auto-descended)
    description: str
    source: str  # where the official release comes from
    layout: str  # one-line summary of the expected layout
    synthetic: bool = False
    num_classes: int = 0  # semantic tasks (avss): classes incl. background = entries of label2idx.json

    def find_root(self, root: Path) -> Path:
        """``root`` itself if it holds the marker, else ``root/subdir``; otherwise a clear error."""
        root = Path(root).expanduser().resolve()
        for candidate in (root, root / self.subdir):
            if (candidate / self.marker).is_file():
                return candidate
        if not root.exists():
            raise DataError(f"{root} does not exist", hint=f"pass --root pointing at {self.layout}")
        hint = f"expected layout: {self.layout}"
        if self.synthetic:  # e.g. a SynthAVS tree generated before this subset existed
            hint = f"regenerate SynthAVS (delete {root}, then `avskit prepare synth`); {hint}"
        raise DataError(f"{root} is not a {self.name} root (no {self.marker} in it or in {self.subdir}/)", hint=hint)

    def default_raw_root(self, home: str | Path | None = None) -> Path:
        return raw_dir(self.name, home)

    def prepared_dir(self, home: str | Path | None = None) -> Path:
        return prepared_dir(self.name, home)

    def is_prepared(self, home: str | Path | None = None) -> bool:
        return (self.prepared_dir(home) / "manifest.json").is_file()


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _add(spec: DatasetSpec) -> None:
    DATASETS.add(spec.name, spec, task=spec.task, splits=spec.splits)


_S4_LAYOUT = "Single-source/{s4_meta_data.csv, s4_data/{visual_frames,gt_masks,audio_wav[,audio_log_mel]}/<split>/<category>/<name>...}"
_MS3_LAYOUT = "Multi-sources/{ms3_meta_data.csv, ms3_data/visual_frames/<id>/<id>.mp4_<k>.png, ms3_data/{gt_masks,audio_wav[,audio_log_mel]}/<split>/<id>...}"
_REFAVS_LAYOUT = "REFAVS/{metadata.csv, media/<folder>/{frames/0..9.jpg,audio.wav}, gt_mask/<folder>/fid_<fid>/00000..00009.png}"
_AVSS_LAYOUT = "<avs_released>/{metadata.csv, label2idx.json, v1s|v1m|v2/<uid>/{frames/<k>.jpg, audio.wav, labels_rgb/<k>.png}}"
_AVSBENCH_SOURCE = "the official AVSBench release (opennlplab.github.io/AVSBench, request form)"

for _name, _synth in (("avsbench-s4", False), ("synth-s4", True)):
    _add(
        DatasetSpec(
            name=_name,
            task="s4",
            splits=("train", "val", "test"),
            builder="avsbench_kit.data.avsbench:build_s4",
            marker="s4_meta_data.csv",
            subdir="Single-source",
            description=("SynthAVS " if _synth else "AVSBench ") + "single-source (S4): one sounding object per clip",
            source="`avskit prepare synth`" if _synth else _AVSBENCH_SOURCE,
            layout=_S4_LAYOUT,
            synthetic=_synth,
        )
    )
for _name, _synth in (("avsbench-ms3", False), ("synth-ms3", True)):
    _add(
        DatasetSpec(
            name=_name,
            task="ms3",
            splits=("train", "val", "test"),
            builder="avsbench_kit.data.avsbench:build_ms3",
            marker="ms3_meta_data.csv",
            subdir="Multi-sources",
            description=("SynthAVS " if _synth else "AVSBench ") + "multi-source (MS3): several objects, some sounding",
            source="`avskit prepare synth`" if _synth else _AVSBENCH_SOURCE,
            layout=_MS3_LAYOUT,
            synthetic=_synth,
        )
    )
for _name, _synth in (("refavs", False), ("synth-refavs", True)):
    _add(
        DatasetSpec(
            name=_name,
            task="refavs",
            splits=("train", "val", "test_s", "test_u", "test_n"),
            builder="avsbench_kit.data.refavs:build_refavs",
            marker="metadata.csv",
            subdir="REFAVS",
            description=("SynthAVS " if _synth else "") + "Ref-AVS: referring expressions over audible videos",
            source="`avskit prepare synth`" if _synth else "the official Ref-AVS release (gewu-lab.github.io/Ref-AVS)",
            layout=_REFAVS_LAYOUT,
            synthetic=_synth,
        )
    )
for _name, _synth in (("avss", False), ("synth-avss", True)):
    _add(
        DatasetSpec(
            name=_name,
            task="avss",
            splits=("train", "val", "test"),
            builder="avsbench_kit.data.avss:build_avss",
            marker="label2idx.json",
            subdir="avs_released",
            description=("SynthAVS AVSBench-semantic layout (v1s, v1m, v2): 10 classes + background" if _synth
                         else "AVSBench-semantic (v1s, v1m, v2): 70 classes + background"),
            source="`avskit prepare synth`" if _synth else _AVSBENCH_SOURCE,
            layout=_AVSS_LAYOUT,
            synthetic=_synth,
            num_classes=11 if _synth else 71,
        )
    )

"""The SAM (v1) wrapper: the rebuilt forwards match the package's own, hooks, checkpoint errors."""

from __future__ import annotations

import pytest
import torch

from avsbench_kit.errors import ConfigError, DataError
from avsbench_kit.models.sam1 import SAM1Wrapper, check_image_size

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sam() -> SAM1Wrapper:
    return SAM1Wrapper("vit_b", None, 64, size="small", init_seed=0)


def test_encoder_matches_the_package_and_block_prompts_add(sam: SAM1Wrapper) -> None:
    images = sam.preprocess(torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(0)))
    assert images.shape == (3, 3, 64, 64)
    with torch.no_grad():
        emb = sam.features(images)
        assert torch.equal(emb, sam.image_encoder(images))  # the package's forward, same numbers
        zero = sam.features(images, [torch.zeros(3, c) for c in sam.block_dims])
        one = sam.features(images, [torch.zeros(3, c) if j else torch.ones(3, c)
                                    for j, c in enumerate(sam.block_dims)])
    assert emb.shape == (3, 256, 4, 4) and torch.equal(zero, emb) and not torch.allclose(one, emb)
    assert all(p.requires_grad is False for p in sam.parameters())


def test_batched_decoder_matches_the_package_per_image(sam: SAM1Wrapper) -> None:
    g = torch.Generator().manual_seed(1)
    emb, sparse, dense = torch.randn(3, 256, 4, 4, generator=g), torch.randn(3, 2, 256, generator=g), \
        torch.randn(3, 256, 4, 4, generator=g)
    with torch.no_grad():
        masks, ious = sam.decode(emb, sparse, dense)
        for i in range(3):  # the package repeats the embedding per prompt: one image at a time
            ref_m, ref_i = sam.mask_decoder(emb[i:i + 1], sam.prompt_encoder.get_dense_pe(), sparse[i:i + 1],
                                            dense[i:i + 1], True)
            assert torch.allclose(masks[i:i + 1], ref_m, atol=1e-5) and torch.allclose(ious[i:i + 1], ref_i, atol=1e-5)
        single, _ = sam.decode(emb, None, None, multimask=False)
    assert masks.shape == (3, 3, 16, 16) and single.shape == (3, 1, 16, 16)


def test_checkpoint_errors_are_one_line(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        SAM1Wrapper("vit_b", tmp_path / "none.pth", 64, size="small")
    with pytest.raises(ConfigError, match="needs pretrained SAM"):
        SAM1Wrapper("vit_b", None, 64, size="small", require_checkpoint=True)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="size=full"):
        SAM1Wrapper("vit_b", bad, 64, size="small")
    with pytest.raises(ConfigError, match="given twice"):
        SAM1Wrapper("vit_b", bad, 64, size="small", state={})
    with pytest.raises(ConfigError, match="unknown SAM variant"):
        SAM1Wrapper("vit_x", None, 64, size="small")
    with pytest.raises(ConfigError, match="multiple of 16"):
        check_image_size(100)


def test_a_checkpoint_loads_and_the_position_embedding_follows_the_input_size(tmp_path, monkeypatch) -> None:
    """A full-size checkpoint is built at 1024 px; smaller inputs resize its position embedding.
    (A shrunken full layout keeps the test small: the loading path is the same.)"""
    import avsbench_kit.models.sam1 as sam1

    monkeypatch.setitem(sam1.SAM1_VARIANTS, "vit_b", dict(sam1.SMALL_VIT))
    donor = sam1.build_sam("vit_b", "full", sam1.NATIVE_SIZE)
    path = tmp_path / "sam_small.pth"
    torch.save(donor.state_dict(), path)
    sam = SAM1Wrapper("vit_b", path, 64)
    assert torch.equal(sam.image_encoder.pos_embed, donor.image_encoder.pos_embed)
    with torch.no_grad():
        assert sam.features(sam.preprocess(torch.rand(1, 3, 64, 64))).shape == (1, 256, 4, 4)
    torch.save({"image_encoder.pos_embed": torch.zeros(1)}, path)
    with pytest.raises(ConfigError, match="does not fit variant"):
        SAM1Wrapper("vit_b", path, 64)
    path.write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="cannot read"):
        SAM1Wrapper("vit_b", path, 64)


def test_a_state_dict_in_memory_loads_at_the_size_it_was_made_at() -> None:
    """``state=`` (e.g. EVF-SAM's ``visual_model.*``): built at the state's grid, loaded strictly."""
    import avsbench_kit.models.sam1 as sam1

    donor = sam1.build_sam("vit_b", "small", 96)  # a 6x6 position grid
    for p in donor.parameters():
        p.data.add_(0.01)
    sam = SAM1Wrapper("vit_b", None, 64, size="small", state=donor.state_dict(), state_source="evf.bin (visual_model.*)")
    assert torch.equal(sam.image_encoder.pos_embed, donor.image_encoder.pos_embed)
    assert torch.equal(sam.mask_decoder.iou_token.weight, donor.mask_decoder.iou_token.weight)
    assert sam.describe()["weights"] == "evf.bin (visual_model.*)" and sam.describe()["checkpoint"] is None
    with torch.no_grad():
        assert sam.features(sam.preprocess(torch.rand(1, 3, 50, 50))).shape == (1, 256, 4, 4)
    partial = {k: v for k, v in donor.state_dict().items() if not k.startswith("mask_decoder.")}
    with pytest.raises(ConfigError, match="does not fit variant"):
        SAM1Wrapper("vit_b", None, 64, size="small", state=partial)

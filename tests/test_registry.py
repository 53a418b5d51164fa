"""Every trainable architecture is built by name, and a checkpoint rebuilds it from the name it stores."""
import pytest

torch = pytest.importorskip("torch", reason="needs radsight[train]")

from radsight.train.registry import architectures, build, checkpoint_fields, from_checkpoint  # noqa: E402

SMALL = {
    "densenet121": dict(num_classes=3, block_config=(1, 1, 1, 1), growth_rate=4, num_init_features=8),
    "densenet-small": dict(num_classes=3, block_config=(1, 1, 1, 1), growth_rate=4, num_init_features=8),
    "densenet121-512": dict(num_classes=3, block_config=(1, 1, 1, 1), growth_rate=4, num_init_features=8),
    "densenet-small-256": dict(num_classes=1, block_config=(1, 1, 1), growth_rate=4, num_init_features=8),
    "resnet50": dict(layers=(1, 1, 1, 1), num_classes=3, in_chans=1),
    "unet": dict(base=4, depth=2),
    "bone-generator": dict(base=4, depth=2),
    "patch-discriminator": dict(base=4),
    "gusarev-autoencoder": dict(width=4),
    "densenet-small-twoview": dict(num_classes=3, block_config=(1, 1, 1, 1), growth_rate=4, num_init_features=8,
                                   fuse_after=2),
    "view-cnn": dict(width=4),
    "age-sex-net": dict(base=4, depth=2, width=8),
}


def test_every_architecture_is_registered():
    assert set(architectures()) == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_checkpoint_rebuilds_the_same_network(name):
    torch.manual_seed(0)
    net = build(name, **SMALL[name]).eval()
    state = {"model": net.state_dict(), **checkpoint_fields(net)}
    again = from_checkpoint(state)
    assert type(again) is type(net) and again.arch_kwargs == net.arch_kwargs
    for key, value in net.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value)


def test_512_variant_reaches_the_dense_blocks_at_a_quarter_of_the_input():
    net = build("densenet121-512", num_classes=14)
    stem = torch.nn.Sequential(*list(net.features.children())[:4])
    assert stem(torch.zeros(1, 3, 512, 512)).shape[-2:] == (128, 128)


def test_unknown_names_and_unnamed_checkpoints_are_refused():
    with pytest.raises(KeyError, match="unknown architecture"):
        build("densenet-huge")
    with pytest.raises(ValueError, match="names no architecture"):
        from_checkpoint({"model": {}})

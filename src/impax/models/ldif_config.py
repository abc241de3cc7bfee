"""Presets of google/ldif ``model/hparams.py``: ``sif``, ``sif++``, ``ldif`` (+ a small ``ldif-cpu``).

Field names are spelled out; the original 2–3-letter hparam key is given in each comment.
Defaults reproduce ``build_ldif_hparams()``; :data:`PRESETS` holds the others.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LdifConfig:
    name: str = "ldif"
    # representation
    element_count: int = 32            # sc
    symmetric_count: int = 16          # lyr (mirrored twins of the first elements)
    radius_type: str = "cov"           # r: 'iso' | 'aa' | 'cov'
    latent_size: int = 32              # ips (0: no local decoder, ipe='f')
    constant_mode: str = "a"           # cp: c = -|a|
    decoder_width: int = 32            # the occnet's sample embedding = ips
    decoder_blocks: int = 1            # orc
    iso_level: float = -0.07           # lset
    hardness: float = 100.0            # hdn
    # encoder
    encoder: str = "resnet50"          # cnna: 's50' (ResNet-50 v2 early fusion), 'cnn' (SIF's 5-conv CNN)
    image_count: int = 20              # samp='imdpn': 20 dodecahedron depth images ('im1dpn': 1)
    image_size: int = 137              # h, w (224^2 renders resized to 137^2)
    fc_width: int = 2048               # 2 x FC(2048, leaky ReLU) after the backbone
    simple_cnn_features: int = 1024    # SIF CNN: FC width after its 5 convs
    # local PointNet (ia='p'); also the point-cloud encoder's PointNet
    local_point_count: int = 1024      # lpc
    local_radius: float = 4.0          # threshold of geom_util.local_views_of_shape
    pointnet_maxpool_features: int = 512  # mfc
    use_normals: bool = True           # 'n' in samp: 6-d point features
    # losses
    loss: str = "unsbbgi"              # loss: substring-selected terms
    uniform_weight: float = 1.0        # l2w
    near_surface_weight: float = 0.1   # a2w
    inside_weight: float = 1.0         # ucf (applied to both sample losses; aucf is never read)
    bbox_weight: float = 10.0          # ibblw
    bbox_half: float = 0.7             # the fixed [-0.7, 0.7]^3 box
    grid_inside_weight: float = 1.0    # ig
    grid_inside_threshold: float = 0.044  # igt (one voxel of the 32^3 grid)
    center_class_weight: float = 0.0   # cc (ec loss)
    center_magnitude_weight: float = 0.01  # cm (only with 'm' in loss)
    sample_count: int = 1024           # spc
    # optimisation
    batch_size: int = 24               # reproduce script (hparams bs)
    learning_rate: float = 5e-5        # lr (Adam)

    @property
    def effective_element_count(self) -> int:
        return self.element_count + self.symmetric_count

    @property
    def explicit_dof(self) -> int:
        return {"iso": 5, "aa": 7, "cov": 10}[self.radius_type]

    @property
    def uses_local_decoder(self) -> bool:
        return self.latent_size > 0


LDIF = LdifConfig()
#: ``build_improved_sif_hparams``: the LDIF architecture without latents.
SIF_PLUS_PLUS = dataclasses.replace(LDIF, name="sif++", latent_size=0)
#: ``build_sif_hparams``: 100 axis-aligned elements, one depth image, simple CNN, ``unsec``.
SIF = dataclasses.replace(
    LDIF, name="sif", element_count=100, symmetric_count=0, radius_type="aa", latent_size=0, encoder="cnn",
    image_count=1, loss="unsec", inside_weight=10.0, sample_count=3000, batch_size=16,
    center_class_weight=0.01, center_magnitude_weight=0.1, grid_inside_weight=0.0, grid_inside_threshold=0.0,
    pointnet_maxpool_features=1024)
#: Not in the original: the LDIF representation (same decoder, 32+16 elements, same loss terms and
#: weights) with a small encoder that trains on 2 CPU cores: the 5-conv CNN on 20 views of 64^2,
#: narrow FCs, a light local PointNet on 128 points per element, and 256 uniform + 256 near-surface
#: samples per shape per step (the decoder runs on every element at every sample, which dominates
#: the step: measured 4.2 s/step at spc 1024 vs ~1 s at 256 on the shared 2-core machine).
LDIF_CPU = dataclasses.replace(
    LDIF, name="ldif-cpu", encoder="cnn", image_size=64, fc_width=256, simple_cnn_features=256,
    local_point_count=128, pointnet_maxpool_features=128, batch_size=4, learning_rate=1e-4, sample_count=256)

PRESETS: dict[str, LdifConfig] = {c.name: c for c in (SIF, SIF_PLUS_PLUS, LDIF, LDIF_CPU)}


def preset(name: str) -> LdifConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown LDIF preset {name!r}; choose from {sorted(PRESETS)}") from None

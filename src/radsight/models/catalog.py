"""Published chest X-ray weights radsight can pull from their publishers and convert.

Labels and operating thresholds are the publishers' own (torchxrayvision's ``model_urls``; CheXNet's
14 NIH classes). An empty label is an output the publisher did not train: it is not imported. No
sha256 is pinned where the publisher publishes none: the first download's digest is recorded in the
model's config and the ONNX file it became is verified on every load.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from radsight.core import FINDINGS
from radsight.inputs.preprocess import InputSpec

NAN = math.nan
XRV_RELEASES = "https://github.com/mlmed/torchxrayvision/releases/download/v1/"
XRV_LABELS = ["Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema", "Fibrosis",
              "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass", "Hernia",
              "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum"]
XRV_LICENSE = "Apache-2.0 (torchxrayvision); the training datasets' own terms apply"
XRV_PAPER = "Cohen et al., TorchXRayVision, MIDL 2022 (arXiv:2111.00595)"


def xrv_input(size: int) -> InputSpec:
    """torchxrayvision's contract: stored values scaled to [-1024, 1024], centre crop, skimage resize."""
    return InputSpec(size=size, mean=0.5, std=1 / 2048, channels=1, pixels="stored", crop="center",
                     resample="skimage")


CHEXNET_INPUT = InputSpec(size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), channels=3,
                          resample="pillow-8bit")


@dataclass(frozen=True)
class Published:
    name: str
    format: str  # an importer in radsight.convert.importers
    url: str
    labels: list[str]  # the network's outputs in order; "" = not trained
    thresholds: list[float]  # the publisher's operating points (NaN = none)
    input: InputSpec
    architecture: str
    training_data: str
    license: str
    reference: str
    sha256: str | None = None
    metrics: dict = field(default_factory=dict)

    def operating_points(self) -> dict[str, float]:
        return {label: t for label, t in zip(self.labels, self.thresholds) if label and not math.isnan(t)}


def _xrv(key: str, file: str, data: str, labels: list[str], thresholds: list[float]) -> Published:
    return Published(name=f"xrv-densenet121-res224-{key}", format="xrv-densenet", url=XRV_RELEASES + file,
                     labels=labels, thresholds=thresholds, input=xrv_input(224), architecture="densenet121",
                     training_data=data, license=XRV_LICENSE, reference=XRV_PAPER)


def _only(names: set[str]) -> list[str]:
    return [label if label in names else "" for label in XRV_LABELS]


_CHEX_LABELS = _only({"Atelectasis", "Consolidation", "Pneumothorax", "Edema", "Effusion", "Pneumonia", "Cardiomegaly",
                      "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum"})
_SUFFIX = "-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"

CATALOG: dict[str, Published] = {p.name: p for p in [
    _xrv("all", "nih-pc-chex-mimic_ch-google-openi-kaggle" + _SUFFIX,
         "NIH, PadChest, CheXpert, MIMIC-CXR (CheXpert labels), Google, OpenI, RSNA", XRV_LABELS,
         [0.07422872, 0.038290843, 0.09814756, 0.0098118475, 0.023601074, 0.0022490358, 0.010060724, 0.103246614,
          0.056810737, 0.026791653, 0.050318155, 0.023985857, 0.01939503, 0.042889766, 0.053369623, 0.035975814,
          0.20204692, 0.05015312]),
    _xrv("nih", "nih" + _SUFFIX, "NIH ChestX-ray14", XRV_LABELS[:14] + [""] * 4,
         [0.039117552, 0.0034529066, 0.11396341, 0.0057298196, 0.00045666535, 0.0018880932, 0.012037827, 0.038744126,
          0.0037213727, 0.014730946, 0.016149804, 0.054241467, 0.037198864, 0.0004403434] + [NAN] * 4),
    _xrv("pc", "pc" + _SUFFIX, "PadChest", XRV_LABELS[:14] + ["", "Fracture", "", ""],
         [0.031012505, 0.013347598, 0.081435576, 0.001262615, 0.002587246, 0.0035944257, 0.0023071, 0.055412333,
          0.044385884, 0.042766232, 0.043258056, 0.037629247, 0.005658899, 0.0091741895, NAN, 0.026507627, NAN, NAN]),
    _xrv("chex", "chex" + _SUFFIX, "CheXpert", _CHEX_LABELS,
         [0.1988969, 0.05710573, NAN, 0.0531293, 0.1435217, NAN, NAN, 0.27212676, 0.07749717, NAN, 0.19712369, NAN,
          NAN, NAN, 0.09932402, 0.09273402, 0.3270967, 0.10888247]),
    _xrv("rsna", "kaggle" + _SUFFIX, "RSNA Pneumonia Challenge", _only({"Pneumonia", "Lung Opacity"}),
         [NAN] * 8 + [0.13486601] + [NAN] * 7 + [0.13511065, NAN]),
    _xrv("mimic_nb", "mimic_nb" + _SUFFIX, "MIMIC-CXR (NegBio labels)", _CHEX_LABELS,
         [0.08558747, 0.011884617, NAN, 0.0040595434, 0.010733786, NAN, NAN, 0.118761964, 0.022924708, NAN,
          0.06358637, NAN, NAN, NAN, 0.022143636, 0.017476924, 0.1258702, 0.014020768]),
    _xrv("mimic_ch", "mimic_ch" + _SUFFIX, "MIMIC-CXR (CheXpert labels)", _CHEX_LABELS,
         [0.09121389, 0.010573786, NAN, 0.005023008, 0.003698257, NAN, NAN, 0.08001232, 0.037242252, NAN,
          0.05006329, NAN, NAN, NAN, 0.019866971, 0.03823637, 0.11303808, 0.0069147074]),
    Published(name="xrv-resnet50-res512-all", format="xrv-resnet",
              url=XRV_RELEASES + "pc-nih-rsna-siim-vin-resnet50-test512-e400-state.pt", labels=XRV_LABELS,
              thresholds=[0.51570356, 0.50444704, 0.53787947, 0.50723547, 0.5025118, 0.5035252, 0.5038076,
                          0.51862943, 0.5078151, 0.50724894, 0.5056339, 0.510706, 0.5053923, 0.5020846, NAN,
                          0.5080557, 0.5138526, NAN],
              input=xrv_input(512), architecture="resnet50", training_data="PadChest, NIH, RSNA, SIIM, VinDr-CXR",
              license=XRV_LICENSE, reference=XRV_PAPER),
    Published(name="chexnet-arnoweng", format="chexnet",
              url="https://github.com/arnoweng/CheXNet/raw/master/model.pth.tar", labels=list(FINDINGS),
              thresholds=[NAN] * 14, input=CHEXNET_INPUT, architecture="densenet121",
              training_data="NIH ChestX-ray14 (the reproduction's own split)",
              license="not stated by the publisher: check before use",
              reference="Rajpurkar et al., CheXNet (arXiv:1711.05225); reproduction by arnoweng/CheXNet"),
]}

# Bone suppression weights of the Gusarev et al. 2017 autoencoder, as public BSE-JSRT code trains and saves them
# (a state dict, often with DataParallel's ``module.`` prefix): 256-px greyscale in [0, 1] in, soft tissue out.
GUSAREV_BONE = Published(
    name="gusarev-bone-autoencoder", format="gusarev-bone", url="", labels=["soft_tissue"], thresholds=[],
    input=InputSpec(size=256, mean=0.0, std=1.0, channels=1, resample="pillow-8bit"),
    architecture="gusarev-autoencoder", training_data="JSRT and BSE-JSRT, as the publisher trained it",
    license="the publisher's; JSRT and BSE-JSRT are for research and education",
    reference="Gusarev et al., Deep learning models for bone suppression in chest radiographs, CIBCB 2017")

XRV_PSPNET = Published(
    name="xrv-pspnet", format="xrv-pspnet",
    url="https://github.com/mlmed/torchxrayvision/releases/download/v1/pspnet_chestxray_best_model_4.pth",
    labels=["right_lung", "left_lung", "heart", "right_clavicle", "left_clavicle"], thresholds=[],
    input=InputSpec(size=512, mean=0.0, std=1.0, channels=1), architecture="pspnet",
    training_data="ChestX-Det (Deepwise AI Lab; NIH ChestX-ray14 films with anatomy masks), as the publisher trained "
                  "it; radsight maps its Right/Left Lung, Heart and Right/Left Clavicle outputs onto its structures",
    license=XRV_LICENSE,
    reference="Lian et al., A Structure-Aware Relation Network for Thoracic Diseases Detection and Segmentation, "
              "IEEE TMI 2021; " + XRV_PAPER)

XRV_RIKEN_AGE = Published(
    name="xrv-riken-age", format="xrv-riken-age",
    url=XRV_RELEASES + "baseline_models_riken_xray_age_every_model_age_senet154_v2_tl_26_ft_7_fp32.pt",
    labels=["age"], thresholds=[], input=xrv_input(320), architecture="senet154 (TorchScript)",
    training_data="NIH ChestX-ray14 films, as the publisher trained it (so its figures on NIH images are not "
                  "independent); estimates age only",
    license=XRV_LICENSE + "; the weights: the publisher's (pirocv/xray_age)",
    reference="Ieki et al., Deep learning-based age estimation from chest X-rays indicates cardiovascular "
              "prognosis, Communications Medicine 2022; " + XRV_PAPER)
CATALOG[XRV_RIKEN_AGE.name] = XRV_RIKEN_AGE

# What a hand-imported file of each format is, unless the user names a catalog entry.
FORMAT_DEFAULTS: dict[str, Published] = {
    "xrv-densenet": CATALOG["xrv-densenet121-res224-all"],
    "xrv-resnet": CATALOG["xrv-resnet50-res512-all"],
    "chexnet": CATALOG["chexnet-arnoweng"],
    "gusarev-bone": GUSAREV_BONE,
    "xrv-pspnet": XRV_PSPNET,
    "xrv-riken-age": XRV_RIKEN_AGE,
}

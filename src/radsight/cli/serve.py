"""``radsight serve``: the worklist service (radsight[serve])."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from radsight.cli.common import check_device, configure_logging, fail
from radsight.models.store import DEFAULT_BONE_MODEL, DEFAULT_LUNG_MODEL, DEFAULT_MODEL, DEFAULT_TRIAGE_MODEL


def serve(
    data_dir: Path = typer.Option(Path("radsight-data"), help="studies, results and the SQLite job store"),
    token: Optional[str] = typer.Option(None, envvar="RADSIGHT_API_TOKEN", help="bearer token for writes"),
    host: str = typer.Option("127.0.0.1", help="listen address (loopback by default)"),
    port: int = typer.Option(8000),
    model: str = typer.Option(DEFAULT_MODEL),
    lung_model: str = typer.Option(DEFAULT_LUNG_MODEL),
    bone_model: Optional[str] = typer.Option(None, help=f"bone suppression model (default: {DEFAULT_BONE_MODEL} "
                                             f"when installed)"),
    bone_views: bool = typer.Option(True, help="soft-tissue and bone views when a bone model is there"),
    workers: Optional[int] = typer.Option(None, min=1, help="analyses at once (default: one a CPU core; they "
                                          "share the cores out)"),
    worker_processes: bool = typer.Option(False, "--worker-processes", help="the workers as processes (each "
                                          "loads the models once): one study's Python work never waits for "
                                          "another's"),
    max_upload_mb: int = typer.Option(256, help="largest accepted upload"),
    orthanc: Optional[str] = typer.Option(None, help="Orthanc URL to poll for radiographs and store results to"),
    dicomweb: Optional[str] = typer.Option(None, help="any DICOMweb archive's root URL (dcm4chee, a cloud "
                                           "healthcare API): new radiograph studies found by QIDO-RS, results "
                                           "stored by STOW-RS"),
    stable_seconds: float = typer.Option(60.0, min=0.0, help="with --dicomweb: a study is taken once its "
                                         "radiographs were unchanged this long"),
    dicomweb_days: int = typer.Option(1, min=0, help="with --dicomweb: look for studies dated today and this many "
                                      "days before (a film arriving late, a study dated at its booking)"),
    cors_origin: list[str] = typer.Option([], help="allow browser calls from this origin (none by default)"),
    triage_model: str = typer.Option(DEFAULT_TRIAGE_MODEL, help="normal/abnormal model whose score gives the "
                                     "triage when installed ('none': the classifier's own)"),
    int8: bool = typer.Option(False, "--int8", help="run each model whose int8 variant is registered (see "
                              "radsight models quantize)"),
    allow_ood: bool = typer.Option(False, "--allow-ood", help="queue images the out-of-distribution gate refuses "
                                                              "(default: answer 422)"),
    explain: str = typer.Option("cam", help="method of the heatmaps and boxes (see analyze); the viewer can also "
                                            "show cam, gradcam and gradcam++ maps"),
    device: str = typer.Option("auto", envvar="RADSIGHT_DEVICE", help="auto, cpu or cuda (see analyze)"),
    heatmaps_for: str = typer.Option("", help="maps for these outputs besides the positive findings (see analyze), "
                                     "e.g. Age: where the apparent age is read (about 50 more model runs a film)"),
    dimse_port: Optional[int] = typer.Option(None, help="also a DICOM node: C-STORE SCP and C-ECHO on this port "
                                             "(same listen address)"),
    ae_title: str = typer.Option("RADSIGHT", help="the DICOM node's AE title"),
    dimse_allow: list[str] = typer.Option([], help="a caller allowed to send: AE, @address or AE@address "
                                                   "(repeatable; none: any caller)"),
    dimse_destination: Optional[str] = typer.Option(None, help="AE@host:port: send results (SR, SEG, SC) there with "
                                                    "C-STORE, retrying until it takes them"),
    db: Optional[str] = typer.Option(None, envvar="RADSIGHT_DB", help="postgresql://... : a job store shared by "
                                     "replicas (give them one --data-dir on shared storage); default SQLite"),
    lease_seconds: float = typer.Option(30.0, help="with --db: a study whose replica stops renewing its lease this "
                                                   "long is analyzed by another"),
    gather_seconds: float = typer.Option(0.0, min=0.0, help="DICOM instances of one study that arrive apart (one "
                                         "association or request each) are analyzed together once none has come "
                                         "for this long; 0: each request or association is analyzed as it ends"),
) -> None:
    """The triage worklist service: REST API, STOW-RS, PACS polling (Orthanc, DICOMweb), the reader's viewer (needs radsight\\[serve])."""
    import logging

    import uvicorn

    from radsight.concurrency import cpu_cores
    from radsight.pipeline.options import PredictorOptions
    from radsight.service.app import Settings, create_app
    if not token:
        raise fail("an API token is required: --token or RADSIGHT_API_TOKEN")
    check_device(device)
    configure_logging(logging.INFO, "%(asctime)s %(name)s %(levelname)s %(message)s")
    options = PredictorOptions(model=model, lung_model=lung_model, bone_model=bone_model if bone_views else None,
                               bone_views=bone_views, method=explain, allow_ood=allow_ood, device=device,
                               triage_model=None if triage_model == "none" else triage_model, int8=int8,
                               heatmaps_for=tuple(n.strip() for n in heatmaps_for.split(",") if n.strip()))
    settings = Settings(data_dir=data_dir, token=token, predictor=options, workers=workers or cpu_cores(),
                        worker_processes=worker_processes,
                        max_upload_bytes=max_upload_mb * 1024 * 1024, orthanc_url=orthanc,
                        dicomweb_url=dicomweb, stable_seconds=stable_seconds, dicomweb_days=dicomweb_days,
                        cors_origins=list(cors_origin), dimse_port=dimse_port,
                        dimse_host=host, ae_title=ae_title, dimse_allowed=tuple(dimse_allow),
                        dimse_destination=dimse_destination, db=db, lease_seconds=lease_seconds,
                        gather_seconds=gather_seconds)
    try:
        application = create_app(settings)
    except ValueError as exc:  # an unknown method, one that needs radsight[train], a model it cannot read
        raise fail(str(exc))
    uvicorn.run(application, host=host, port=port, log_level="info", access_log=False)

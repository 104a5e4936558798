"""The FastAPI application: REST API, OpenAPI schema and the web page, in one app.

Endpoints:

* ``GET /healthz``: status, version, served tasks.
* ``GET /v1/models``: the served models with their metadata, metrics and model cards.
* ``POST /v1/predict/wdbc``: JSON ``{"features": {name: value}}``; P(malignant), label, SHAP reasons.
* ``POST /v1/predict/{task}``: an image upload (``multipart/form-data``, field ``file``; PNG, JPEG, TIFF or
  DICOM) for ``busi-seg``, ``busi-cls``, ``breastmnist``, ``pcam``, ``idc``, ``breakhis``, ``ultrasound``
  (segmentation and classification of one image) and ``monuseg`` (nuclei of an H&E tile and their morphometry).
* ``GET /v1/predictions`` (``limit``, ``offset``, ``task``) and ``GET /v1/predictions/{id}``: the record.
* ``GET /``: the page (``static/index.html``); ``/static/...`` its script and style sheet.

``HEAD`` is answered wherever ``GET`` is (uptime probes): the same status and headers, no body.

Every JSON answer carries ``research_use_only``; every response carries the header
``X-Research-Use-Only``. Bad requests get a 4xx answer ``{"error": {"code", "message", "problems"}}``.
Models load once, when the app starts (lifespan); inference runs in a thread pool.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from fastapi import FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from breastdx import RESEARCH_USE_ONLY, __version__
from breastdx.data.decode_worker import DecoderPool
from breastdx.data.images import sniff_bytes
from breastdx.runs import json_ready as finite  # an answer's NaN and infinity as null (JSON has none)
from breastdx.serve import schemas
from breastdx.serve.auth import BearerAuth, document_bearer_auth
from breastdx.serve.db import INPUT_NAME_LENGTH, DatabaseError, PredictionStore, unavailable_message
from breastdx.serve.inputs import (ServeInputError, bytes_sha256, features_sha256, parse_json_body,
                                   parse_wdbc_features, quote_input)
from breastdx.serve.middleware import (NOTICE_HEADER, PAGE_CSP, BodyLimit, BodyTimeoutError, BodyTooLargeError,
                                       Notice, answer_head, error_response)
from breastdx.serve.models import (NUCLEI_KIND, ULTRASOUND_TASK, LoadedModel, ModelRegistry, predict_features,
                                   predict_image)
from breastdx.serve.nuclei import predict_nuclei
from breastdx.serve.settings import ServeSettings, auto_torch_threads

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

DECODE_WORKERS = 2
"""Worker processes decoding uploads (:class:`breastdx.data.decode_worker.DecoderPool`): one upload that makes a
decoder loop holds one of them until its time limit, while the other goes on serving."""

MULTIPART_OVERHEAD = 64 * 1024
"""Bytes allowed above the upload limit for the multipart framing (boundaries, part headers, other fields)."""

WDBC_MAX_BODY_BYTES = 64 * 1024
"""The largest WDBC request body: a case (30 named values, an id, n_reasons) is under 4 KB, so a body sized like an
image upload is refused unread rather than parsed."""

BODY_IDLE_TIMEOUT_S = 60.0
"""Seconds a request body may pause between two chunks before the request is answered 408 and its connection let
go (nginx's ``client_body_timeout``): a client that stalls mid-upload must not hold the server's memory for ever."""

INT64_MAX = 2**63 - 1
"""Largest id, offset or limit accepted: what a 64-bit signed integer column (SQLite, PostgreSQL) holds."""

DOCS_STATIC = "/static-offline-docs"
"""Where Swagger UI's and ReDoc's files are served (from the ``fastapi_offline`` package)."""

NOT_RECORDED = ("per_nucleus",)
"""Entries of an answer the record does not keep, besides the images: bulk tables the client asked for."""


def without_images(value: Any) -> Any:
    """``value`` without the ``*_png`` entries (data URLs) and :data:`NOT_RECORDED`, recursively: what the record
    keeps."""
    if isinstance(value, dict):
        return {k: without_images(v) for k, v in value.items() if not k.endswith("_png") and k not in NOT_RECORDED}
    if isinstance(value, list):
        return [without_images(v) for v in value]
    return value


def _problems_of_validation(errors: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in errors:
        where = ".".join(str(p) for p in e.get("loc", ()))
        got = e.get("input")
        shown = "" if got is None or isinstance(got, (dict, list)) else f" (got {quote_input(got)})"
        out.append(f"{where}: {e.get('msg', 'invalid')}{shown}")
    return out


def _record_label(answer: dict[str, Any]) -> str | None:
    if answer.get("nuclei"):
        return f"{answer['nuclei']['n_nuclei']} nuclei"
    if answer.get("classification"):
        return answer["classification"]["label"]
    seg = answer.get("segmentation")
    if seg:
        return "lesion" if seg["lesion_found"] else "no lesion"
    return None


_WDBC_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": schemas.WDBCRequest.model_json_schema()}}}}
_IMAGE_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": "The image: PNG, JPEG, TIFF or DICOM (found from its bytes)."}}}}}}}


def _error_answers(texts: dict[int, str]) -> dict[int, dict[str, Any]]:
    """OpenAPI ``responses`` of error answers, by status code, each with the service's error body (FastAPI would
    document a 422 as its own ``{"detail": [...]}``, which the service never answers)."""
    return {code: {"model": schemas.ErrorResponse, "description": text} for code, text in texts.items()}


_ERRORS = _error_answers({
    400: "Malformed request body.", 404: "Unknown task, or its model is not shipped.",
    408: "The request body stopped arriving (no chunk for BODY_IDLE_TIMEOUT_S seconds).",
    413: "Upload over the size limit, or image over the pixel limit.",
    415: "Not an image (whatever its name says), or the wrong content type for the task.",
    422: "Corrupt or truncated image; missing, unknown or non-numeric features; invalid parameters.",
    503: "The prediction could not be recorded."})
_RECORD_ERRORS = _error_answers({422: "Invalid parameters (limit, offset, task, id).",
                                 503: "The record could not be read."})
"""The error answers of the record endpoints."""


def create_app(settings: ServeSettings | None = None, *, registry: ModelRegistry | None = None,
               store: PredictionStore | None = None, decoder: DecoderPool | None = None) -> FastAPI:
    """Build the application.

    Models are loaded and the database opened when the app starts (its lifespan), not here, unless they are
    given: a test can share one loaded :class:`ModelRegistry` between apps.

    Args:
        settings: Service settings; default :class:`ServeSettings()` (every shipped model, the default
            SQLite file).
        registry: Models already loaded; default: load ``settings.model_dirs`` (or the zoo) at start-up.
        store: The prediction record; default: open ``settings.database_url`` at start-up (and close it at
            shut-down).
        decoder: The worker processes that decode uploads under a time and memory limit; default:
            :data:`DECODE_WORKERS` of them with the default limits of :mod:`breastdx.data.decode_worker`, started
            with the app and stopped at shut-down (which ends a decode in progress at once).

    Returns:
        The FastAPI app (serve it with uvicorn).
    """
    settings = settings or ServeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import torch

        from breastdx.runtime import declare_long_running

        threads_before = torch.get_num_threads()
        long_running_before = declare_long_running(True)  # start-up is paid once: bfloat16 where native
        own_store = store is None
        app.state.store = store if store is not None else PredictionStore(settings.resolved_database_url)
        app.state.decoder = decoder if decoder is not None else DecoderPool(workers=DECODE_WORKERS)
        start = time.perf_counter()
        app.state.registry = registry if registry is not None else await run_in_threadpool(
            lambda: ModelRegistry.load(settings.model_dirs, warmup=settings.warmup, gradcam=settings.gradcam,
                                       lesion_aware=settings.lesion_aware,
                                       dtype=settings.dtype, backend=settings.backend))
        reg: ModelRegistry = app.state.registry
        networks = sum(m.kind != "tabular" for m in reg.models.values())
        threads = settings.torch_threads or auto_torch_threads(networks)
        torch.set_num_threads(threads)
        for model in reg.models.values():  # ONNX Runtime sessions keep their own pools: the same share of cores
            runner = getattr(model.predictor, "runner", None)
            if runner is not None:
                runner.set_threads(threads)
        app.state.torch_threads = threads
        log.info("breastdx %s: serving %s (%d model(s) in %.1f s, %d torch thread(s)); left out: %s. %s",
                 __version__, ", ".join(reg.tasks()) or "no task", len(reg.models), time.perf_counter() - start,
                 threads, ", ".join(n for n, _ in reg.unavailable) or "none", RESEARCH_USE_ONLY)
        try:
            yield
        finally:
            torch.set_num_threads(threads_before)
            declare_long_running(long_running_before)
            if decoder is None:
                app.state.decoder.close()
            if own_store:
                app.state.store.close()

    from fastapi_offline import FastAPIOffline

    app = FastAPIOffline(
        static_url=DOCS_STATIC,
        title="breastdx",
        version=__version__,
        summary="Breast-cancer diagnosis with machine learning: REST API and web page.",
        description=f"**{RESEARCH_USE_ONLY}**\n\nUpload an ultrasound image (PNG, JPEG, TIFF, DICOM) or the 30 WDBC "
                    f"features; get class probabilities, the label at the model's operating point, Grad-CAM maps, "
                    f"lesion masks and areas. Every prediction is recorded.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    # The last added is the outermost: the notice, access control, then the body limit (see serve.middleware).
    app.add_middleware(BodyLimit, max_body=settings.max_upload_bytes + MULTIPART_OVERHEAD,
                       idle_timeout_s=BODY_IDLE_TIMEOUT_S,
                       path_limits={"/v1/predict/wdbc": (WDBC_MAX_BODY_BYTES, "one WDBC case is under 4 KB")})
    app.add_middleware(BearerAuth, error=error_response, enabled=settings.auth)
    app.add_middleware(Notice)
    document_bearer_auth(app)
    # Starlette spools a multipart file part to a temporary file on disk past 1 MiB: keep every accepted upload in
    # memory instead (the middleware above already bounds the body), so that no medical image touches the disk.
    from starlette.formparsers import MultiPartParser

    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size,
                                         settings.max_upload_bytes + MULTIPART_OVERHEAD)

    # ------------------------------------------------------------------------------------------ errors
    @app.exception_handler(ServeInputError)
    async def _input_error(_request: Request, exc: ServeInputError) -> JSONResponse:
        return error_response(exc.status, exc.code, str(exc), exc.problems)

    @app.exception_handler(BodyTooLargeError)
    async def _too_large(_request: Request, exc: BodyTooLargeError) -> JSONResponse:
        return error_response(413, "upload_too_large", str(exc))

    @app.exception_handler(BodyTimeoutError)
    async def _stalled(_request: Request, exc: BodyTimeoutError) -> JSONResponse:
        return error_response(408, "request_timeout", str(exc), headers={"Connection": "close"})

    from starlette.requests import ClientDisconnect

    @app.exception_handler(ClientDisconnect)
    async def _gone(_request: Request, _exc: ClientDisconnect) -> JSONResponse:
        log.info("a client went away before its request body had arrived; nothing was predicted")
        return error_response(400, "client_disconnected", "The connection closed before the request body had "
                              "arrived.", headers={"Connection": "close"})  # nobody reads it: no traceback logged

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = _problems_of_validation(list(exc.errors()))
        return error_response(422, "invalid_request", "The request's parameters are not valid.", problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"No such address: {request.method} {request.url.path}. See /docs or /openapi.json."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), message,
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(DatabaseError)
    async def _database(request: Request, exc: DatabaseError) -> JSONResponse:
        log.error("%s", exc)  # the database (password hidden) and the cause: for the administrator, not the client
        if request.method == "POST":
            message = unavailable_message("The prediction could not be recorded", "It was not answered, because "
                                          "every answered prediction must be recorded. ")
        else:
            message = unavailable_message("The record could not be read")
        return error_response(503, "database_unavailable", message)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - a bug
        log.exception("unexpected error")
        return error_response(500, "internal_error", f"An unexpected error occurred ({type(exc).__name__}); "
                              f"it has been logged.", headers={NOTICE_HEADER: RESEARCH_USE_ONLY})

    # ------------------------------------------------------------------------------------------ helpers
    def _registry(request: Request) -> ModelRegistry:
        return request.app.state.registry

    def _store(request: Request) -> PredictionStore:
        return request.app.state.store

    def _use_threads(request: Request) -> None:
        # torch keeps the thread count per thread once a thread has used it: set it in each worker thread.
        import torch

        wanted = request.app.state.torch_threads
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)

    def _finish(request: Request, task: str, models: list[LoadedModel], sha: str, input_name: str | None,
                answer: dict[str, Any], start: float, notes: list[str]) -> dict[str, Any]:
        elapsed = round((time.perf_counter() - start) * 1000, 2)  # answered and recorded alike
        answer = finite(answer)
        refs = [m.ref for m in models]
        if not settings.record_names:  # names may identify a patient: kept only with --record-names
            input_name = None
        if input_name is None and isinstance(answer.get("image"), dict):  # nor answered, where it is not kept
            answer["image"] = {**answer["image"], "filename": None}
        response = {"prediction_id": 0, "created_at": datetime.now(timezone.utc), "task": task, "models": refs,
                    "input_sha256": sha, "elapsed_ms": elapsed, **answer, "notes": notes,
                    "research_use_only": RESEARCH_USE_ONLY}
        schemas.PredictionResponse.model_validate(response)  # an answer that cannot be sent is not recorded either
        entry = _store(request).add(
            task=task, model_name="+".join(r["name"] for r in refs), model_version="+".join(r["version"] for r in refs),
            input_sha256=sha, input_name=input_name, label=_record_label(answer), elapsed_ms=elapsed,
            result={**without_images(answer), "notes": notes},  # what the answer said, out-of-scope notes too
            token_name=getattr(request.state, "token_name", None))
        return {**response, "prediction_id": entry.id, "created_at": entry.created_at}

    # ------------------------------------------------------------------------------------------ routes
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    @app.get("/healthz", response_model=schemas.Health, tags=["service"])
    async def healthz(request: Request) -> dict[str, Any]:
        """Liveness and what is served."""
        reg = _registry(request)
        return {"status": "ok" if reg.models else "degraded", "version": __version__, "tasks": reg.tasks(),
                "models": [m.ref for m in reg.models.values()], "auth": settings.auth,
                "record_names": settings.record_names, "research_use_only": RESEARCH_USE_ONLY}

    @app.get("/v1/models", response_model=schemas.ModelsResponse, tags=["models"])
    async def list_models(request: Request) -> dict[str, Any]:
        """The served models with their metadata, metrics and model cards, and the ones left out."""
        reg = _registry(request)
        return {"models": [finite(m.describe()) for m in reg.models.values()], "tasks": reg.tasks(),
                "unavailable": [{"name": n, "reason": r, "by_design": n in reg.by_design} for n, r in reg.unavailable],
                "research_use_only": RESEARCH_USE_ONLY}

    @app.post("/v1/predict/wdbc", response_model=schemas.PredictionResponse, tags=["predict"],
              openapi_extra=_WDBC_BODY, responses=_ERRORS)
    async def predict_wdbc(request: Request) -> dict[str, Any]:
        """One WDBC case: P(malignant), the label at the operating threshold, the largest SHAP contributions."""
        model = _registry(request).get("wdbc")[0]
        content_type = request.headers.get("content-type", "")
        if not content_type.split(";")[0].strip().lower().endswith("json"):
            raise ServeInputError(415, "wrong_content_type", f"Task 'wdbc' takes JSON: send Content-Type "
                                  f"application/json with {{\"features\": {{name: value, ...}}}} (got content type "
                                  f"{content_type or 'none'!r}).")
        body = await request.body()  # at most WDBC_MAX_BODY_BYTES (BodyLimit's limit for this path)
        payload = parse_json_body(body)
        try:
            req = schemas.WDBCRequest.model_validate(payload)
        except RecursionError:
            raise ServeInputError(422, "invalid_request", "The body nests arrays or objects too deeply; expected "
                                  "{\"features\": {name: value, ...}}.") from None
        except ValidationError as e:
            raise ServeInputError(422, "invalid_request", "The body does not match {\"features\": {name: value, "
                                  "...}, \"case_id\": optional, \"n_reasons\": optional}.",
                                  _problems_of_validation(list(e.errors()))) from None
        X = parse_wdbc_features(req.features)
        n_reasons = settings.n_reasons if req.n_reasons is None else req.n_reasons
        start = time.perf_counter()

        def work() -> dict[str, Any]:
            _use_threads(request)
            answer = predict_features(model, X, n_reasons)
            return _finish(request, "wdbc", [model], features_sha256(X), req.case_id, answer, start, [])

        return await run_in_threadpool(work)

    @app.post("/v1/predict/{task}", response_model=schemas.PredictionResponse, tags=["predict"],
              openapi_extra=_IMAGE_BODY, responses=_ERRORS)
    async def predict_upload(
        task: str,
        request: Request,
        composites: bool = Query(False, description="Also answer the overlays blended into the image "
                                                    "(contour_composite_png, gradcam_composite_png)."),
        frame: int | None = Query(None, ge=1, le=INT64_MAX, description="For a multi-frame DICOM (an ultrasound "
                                  "cine loop): the frame to read, 1-based; default the first. image.frame says "
                                  "which was read."),
        per_nucleus: bool = Query(False, description="monuseg: also answer nuclei.per_nucleus, one row per nucleus "
                                                     "(the columns of predict monuseg's nuclei/<tile>.csv); not "
                                                     "kept in the record."),
    ) -> dict[str, Any]:
        """One image (field ``file``) for an imaging task; ``ultrasound`` runs busi-seg and busi-cls on it.

        Tasks: see ``GET /healthz``. The answer holds class probabilities, the label at the operating point
        and the Grad-CAM maps (classifiers), the mask, contour and lesion area (segmentation; mm² when the
        DICOM pixel spacing is known), for ``monuseg`` (an H&E tile at 40x) the nuclei's outlines, count and
        30 morphometry columns, and the time taken.
        """
        models = _registry(request).get(task)
        if models[0].kind == "tabular":
            raise ServeInputError(415, "wrong_input", f"Task {task!r} takes JSON features, not an upload.")
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise ServeInputError(415, "wrong_content_type", f"Task {task!r} takes an image upload: send "
                                  f"multipart/form-data with the image in a field named 'file' (got content type "
                                  f"{content_type or 'none'!r}).")
        try:
            form = await request.form(max_files=1, max_fields=16)
        except (BodyTooLargeError, BodyTimeoutError):
            raise
        except StarletteHTTPException as e:
            raise ServeInputError(400, "malformed_upload",
                                  f"The multipart body could not be parsed: {str(e.detail).rstrip('.')}.") from None
        except Exception as e:  # noqa: BLE001 - a broken body from the client
            raise ServeInputError(400, "malformed_upload", f"The multipart body could not be parsed "
                                  f"({type(e).__name__}: {e}).") from None
        try:
            upload = form.get("file")
            if isinstance(upload, str):  # a part without a filename arrives as text
                raise ServeInputError(422, "missing_file", "The field 'file' arrived as a text value, not a file: "
                                      "send the image as a file part with a file name (curl: -F file=@image.png).")
            if not isinstance(upload, UploadFile):
                fields = ", ".join(repr(k) for k in form.keys()) or "none"
                raise ServeInputError(422, "missing_file", f"No file in the upload: put the image in a multipart "
                                      f"field named 'file' (fields received: {fields}).")
            data = await upload.read(settings.max_upload_bytes + 1)
            # Names may identify a patient (a PACS export names files after them): messages and the answer say
            # "upload" unless the service keeps names (--record-names), and never give a DICOM's.
            named = settings.record_names and upload.filename and sniff_bytes(data[:132]) != "DICOM"
            filename = upload.filename[:INPUT_NAME_LENGTH] if named else "upload"  # as the record keeps it
        finally:
            await form.close()
        if len(data) > settings.max_upload_bytes:
            raise ServeInputError(413, "upload_too_large", f"{filename}: the file is over the limit of "
                                  f"{settings.max_upload_bytes:,} bytes ({settings.max_upload_bytes / 2**20:.1f} MiB); "
                                  f"send a smaller file.")
        notes = []
        if task == ULTRASOUND_TASK:
            served = {m.task for m in models}
            parts = {"busi-seg": "segmentation", "busi-cls": "classification"}
            notes = [f"No {t} model is served, so this answer has no {what}."
                     for t, what in parts.items() if t not in served]
        start = time.perf_counter()

        def work() -> dict[str, Any]:
            _use_threads(request)
            if models[0].kind == NUCLEI_KIND:
                answer = predict_nuclei(models[0], data, filename, max_pixels=settings.max_pixels,
                                        display_max_side=settings.display_max_side, composites=composites,
                                        decoder=request.app.state.decoder, frame=frame, per_nucleus=per_nucleus)
            else:
                answer = predict_image(models, data, filename, max_pixels=settings.max_pixels,
                                       display_max_side=settings.display_max_side, gradcam=settings.gradcam,
                                       composites=composites, decoder=request.app.state.decoder, frame=frame)
            # De-identification: nothing is read from a DICOM's header but its pixels and calibration, and no file
            # name is recorded but with --record-names (never a DICOM's): the SHA-256 is the reference.
            return _finish(request, task, models, bytes_sha256(data), filename if named else None, answer, start,
                           notes)

        return await run_in_threadpool(work)

    @app.get("/v1/predictions", response_model=schemas.PredictionList, tags=["record"], responses=_RECORD_ERRORS)
    async def list_predictions(
        request: Request,
        limit: int = Query(50, ge=1, le=settings.max_list_limit, description="Most entries returned."),
        offset: int = Query(0, ge=0, le=INT64_MAX, description="Entries skipped, from the newest."),
        task: str | None = Query(None, max_length=32, description="Only this task."),
    ) -> dict[str, Any]:
        """The recorded predictions, newest first (without images)."""
        from breastdx.registry import unknown_name
        from breastdx.tasks import TASKS

        task = task or None  # '?task=' (a form's "all"): no filter
        known = sorted(set(TASKS.names()) | {ULTRASOUND_TASK})
        if task is not None and task not in known:  # a typo would list nothing, as if nothing had been recorded
            raise ServeInputError(422, "unknown_task", str(unknown_name("task", task, known)))
        total, entries = await run_in_threadpool(_store(request).list, limit, offset, task)
        return {"total": total, "limit": limit, "offset": offset, "items": [finite(e.to_dict()) for e in entries],
                "research_use_only": RESEARCH_USE_ONLY}

    @app.get("/v1/predictions/{prediction_id}", response_model=schemas.PredictionEntryOut, tags=["record"],
             responses=_error_answers({404: "No prediction with this id."}) | _RECORD_ERRORS)
    async def get_prediction(request: Request, prediction_id: int = PathParam(..., le=INT64_MAX)) -> dict[str, Any]:
        """One recorded prediction."""
        entry = await run_in_threadpool(_store(request).get, prediction_id)
        if entry is None:
            raise ServeInputError(404, "not_found", f"No prediction with id {prediction_id}.")
        return {**finite(entry.to_dict()), "research_use_only": RESEARCH_USE_ONLY}

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    answer_head(app)
    return app


@contextmanager
def running_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0, *,
                   start_timeout_s: float = 120.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread (for tests and benchmarks).

    Args:
        app: The app.
        host: Address; loopback by default.
        port: Port; 0 picks a free one.
        start_timeout_s: How long to wait for start-up (models load then).

    Yields:
        The base URL, e.g. ``http://127.0.0.1:41234``.

    Raises:
        RuntimeError: If the server does not start in time.
    """
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="breastdx-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"The server did not start within {start_timeout_s:.0f} s.")
        time.sleep(0.05)
    sock = server.servers[0].sockets[0]
    bound_host, bound_port = sock.getsockname()[:2]
    try:
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def app_from_environment() -> FastAPI:
    """The app of one worker process of ``breastdx serve --workers N``: :func:`create_app` with the settings
    from ``$BREASTDX_SERVE_SETTINGS`` (:meth:`ServeSettings.to_json`); uvicorn calls it in each worker.

    Raises:
        ValueError: If the variable is missing or malformed.
    """
    import os

    from breastdx.serve.settings import SETTINGS_ENV

    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise ValueError(f"{SETTINGS_ENV} is not set; start the workers with 'breastdx serve --workers N'.")
    return create_app(ServeSettings.from_json(text))

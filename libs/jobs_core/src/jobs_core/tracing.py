"""OpenTelemetry tracing of a job's life: API request -> enqueue -> each attempt run, one trace.

Off unless the standard ``OTEL_*`` variables configure an exporter (``OTEL_TRACES_EXPORTER`` other than
``none``, or ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED``
wins. While off nothing here imports the SDK: callers test :func:`enabled` (a module flag) and skip every
span, so no job record carries a ``trace`` field and no extra Redis call is made.

The submission's context (a W3C ``traceparent``) is stored in the job record by the enqueue script; every
attempt's run span is a child of it (one trace from the request to the last attempt) and links to it, as
OpenTelemetry's messaging conventions do for a consumer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("jobs.tracing")

#: Job attribute names on spans (and the log field names that match them).
JOB_ID, TASK, ATTEMPT, QUEUE = "jobs.job_id", "jobs.task", "jobs.attempt", "jobs.queue"

_state: dict[str, Any] = {"enabled": False, "params": False}


def configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces to be exported."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER")
    if exporters is not None and exporters.strip():
        return any(e.strip().lower() not in ("", "none") for e in exporters.split(","))
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def enabled() -> bool:
    """Whether this process exports traces (:func:`setup` ran with tracing configured)."""
    return bool(_state["enabled"])


def record_params() -> bool:
    """Whether job params and results may go into spans (``JOBS_TRACE_PARAMS=1``; off by default)."""
    return bool(_state["params"])


def setup(service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Install the SDK tracer provider, its exporter(s) and the Redis instrumentation, when configured.

    Idempotent; True when tracing is on. Call it in the process that will make the spans (after a fork:
    the batch exporter's thread does not survive one). The service name is ``OTEL_SERVICE_NAME`` when set.
    """
    env = os.environ if environ is None else environ
    if _state["enabled"] or not configured(env):
        return bool(_state["enabled"])
    from opentelemetry import trace
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))  # sampler: OTEL_TRACES_SAMPLER
    provider.sampler = _without_orphan_redis(provider.sampler)
    names = [e.strip().lower() for e in (env.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")]
    for name in names:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol and protocol != "http/protobuf":
                log.warning("tracing: OTLP protocol %r is not shipped; using http/protobuf", protocol)
            exporter = OTLPSpanExporter()
        elif name == "console":
            exporter = ConsoleSpanExporter()
        elif name in ("", "none"):
            continue
        else:
            log.warning("tracing: unknown OTEL_TRACES_EXPORTER %r ignored", name)
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    _install_log_fields()
    _state["params"] = env.get("JOBS_TRACE_PARAMS", "").strip().lower() in ("1", "true", "yes", "on")  # as Settings
    _state["enabled"] = True
    log.info("tracing on", extra={"exporters": names, "service": env.get("OTEL_SERVICE_NAME") or service_name,
                                  "sampler": env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
                                  "sampler_arg": env.get("OTEL_TRACES_SAMPLER_ARG")})
    return True


def shutdown() -> None:
    """Flush spans not yet exported (at a clean exit)."""
    if not _state["enabled"]:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    flush = getattr(provider, "shutdown", None)
    if flush is not None:
        flush()


def _without_orphan_redis(sampler: Any) -> Any:
    """``sampler``, but Redis command spans with no parent are dropped: the worker's polls, heartbeats and
    the scrape-time reads would otherwise each be a trace of one span. Redis calls made inside a request
    or a job's span are kept."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class WithoutOrphanRedis(Sampler):
        def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: Any = None,
                          attributes: Any = None, links: Any = None, trace_state: Any = None) -> SamplingResult:
            if attributes and attributes.get("db.system") == "redis" and not (
                trace.get_current_span(parent_context).get_span_context().is_valid
            ):
                return SamplingResult(Decision.DROP)
            decided: SamplingResult = sampler.should_sample(parent_context, trace_id, name, kind, attributes,
                                                            links, trace_state)
            return decided

        def get_description(self) -> str:
            return f"WithoutOrphanRedis({sampler.get_description()})"

    return WithoutOrphanRedis()


def _install_log_fields() -> None:
    """Every log record made while a span is current gets ``trace_id`` and ``span_id`` (hex, as backends
    show them), whatever handler formats it."""
    from opentelemetry import trace

    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        return record

    logging.setLogRecordFactory(factory)


# ---------------------------------------------------------------------------------------------- helpers
def tracer() -> Any:
    """This package's tracer."""
    from opentelemetry import trace

    return trace.get_tracer("jobs")


def traceparent() -> str:
    """The current span's W3C ``traceparent`` ('' when no span is current or tracing is off)."""
    if not _state["enabled"]:
        return ""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent", "")


def context_of(parent: str | None) -> Any:
    """The context a ``traceparent`` string names (an empty context for None or a malformed one)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": parent} if parent else {})


def trace_id_of(parent: str | None) -> str | None:
    """The trace id (32 hex) in a ``traceparent``, for log lines; None when absent or malformed."""
    if not parent:
        return None
    parts = parent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def clip(data: bytes, limit: int = 4096) -> str:
    """JSON bytes as a span attribute, cut to ``limit`` characters."""
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


def log_trace_id(parent: str | None) -> str | None:
    """The ``trace_id`` log field for a job whose submission context is ``parent``: None when tracing is
    off or when a span is current (the record factory adds that span's ids; a second ``trace_id`` passed
    in ``extra=`` would make ``logging`` raise)."""
    if not _state["enabled"] or not parent:
        return None
    from opentelemetry import trace

    if trace.get_current_span().get_span_context().is_valid:
        return None
    return trace_id_of(parent)


def job_attributes(job_id: str | Sequence[str], task: str, queue: str, attempt: int | None = None
                   ) -> dict[str, Any]:
    """Span attributes naming a job (or a batch of jobs)."""
    attrs: dict[str, Any] = {TASK: task, QUEUE: queue, "messaging.system": "jobs",
                             "messaging.destination.name": queue}
    attrs[JOB_ID if isinstance(job_id, str) else "jobs.job_ids"] = job_id if isinstance(job_id, str) else list(
        job_id)
    if attempt is not None:
        attrs[ATTEMPT] = attempt
    return attrs


@contextmanager
def enqueue_span(task: str, queue: str, count: int) -> Iterator[Any]:
    """A producer span around an enqueue (None when tracing is off); its context goes into the records."""
    if not _state["enabled"]:
        yield None
        return
    from opentelemetry.trace import SpanKind

    with tracer().start_as_current_span(f"enqueue {task}", kind=SpanKind.PRODUCER, attributes={
        TASK: task, QUEUE: queue, "messaging.system": "jobs", "messaging.operation.type": "send",
        "messaging.destination.name": queue, "messaging.batch.message_count": count,
    }) as span:
        yield span


def start_run_span(job_id: str, task: str, queue: str, attempt: int, parent: str | None,
                   name: str = "run", start_time_ns: int | None = None) -> Any:
    """Start (not make current) the consumer span of one attempt: a child of the submission and linked
    to it. The caller ends it (``end_run_span``)."""
    from opentelemetry.trace import Link, SpanKind, get_current_span

    ctx = context_of(parent)
    submitted = get_current_span(ctx).get_span_context()
    links = [Link(submitted, {"jobs.link": "submission"})] if submitted.is_valid else []
    attrs = job_attributes(job_id, task, queue, attempt)
    attrs["messaging.operation.type"] = "process"
    return tracer().start_span(f"{name} {task}", context=ctx, kind=SpanKind.CONSUMER, attributes=attrs,
                               links=links, start_time=start_time_ns)


def end_run_span(span: Any, outcome: str, error: Any = None, end_time_ns: int | None = None) -> None:
    """End an attempt's span with its outcome (an error status for failed, retry and lost attempts)."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("jobs.outcome", outcome)
    if error is not None:
        span.set_attribute("error.type", str(getattr(error, "type", type(error).__name__)))
    if outcome in ("failed", "retry", "lost"):
        message = getattr(error, "message", None) if error is not None else None
        span.set_status(Status(StatusCode.ERROR, str(message)[:200] if message else outcome))
    span.end(end_time=end_time_ns)


def span_traceparent(span: Any) -> str:
    """The ``traceparent`` of ``span`` (to hand to the child process that runs the task)."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent", "")


@contextmanager
def current(span: Any) -> Iterator[None]:
    """Make ``span`` current for the block (Redis calls made in it become its children); no-op for None."""
    if span is None:
        yield
        return
    from opentelemetry import trace

    with trace.use_span(span, end_on_exit=False):
        yield

"""The service's metrics, defined once, recorded by the service core, exported by each mode.

The core (services/servicer.py, services/stream_core.py) calls one small interface: a
`Recorder` for the server and a `StreamMeter` per open stream. Where the numbers go is the
mode's `MetricSink`:

    embedded:  Recorder(PrometheusSink(registry))  -> /metrics on --metrics-port (prometheus-client)
    Ray:       Recorder(RaySink())                 -> Ray's metrics agent, names prefixed `ray_`

Label cardinality stays bounded: the only client-chosen label is `stream` (the stream_id, cut
to 64 characters), and a stream's series exist only while it is open (removed at close, so
they count at most the open streams). Ray cannot remove a series, so `RaySink` drops the
`stream` label (Serve adds its deployment/replica tags instead). Gauges are server-wide sums:
each stream adds its share and takes it back at close.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter as Tally
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from services.prompt_cache import CacheStats

Kind = Literal["counter", "gauge", "histogram"]
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MAX_LABEL_CHARS = 64


@dataclass(frozen=True)
class Metric:
    """One metric. Counter names carry no `_total`: both exporters add it."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()


FRAMES_IN = Metric("clipspot_stream_frames_decoded", "counter",
                   "Frames decoded on an open stream (series removed at close)", ("stream",))
FRAMES_OUT = Metric("clipspot_stream_frames_answered", "counter",
                    "FrameResults sent on an open stream (series removed at close)", ("stream",))
FRAMES_IN_ALL = Metric("clipspot_frames_decoded", "counter", "Frames decoded, all streams")
FRAMES_OUT_ALL = Metric("clipspot_frames_answered", "counter",
                        "FrameResults sent, all streams (dropped frames included)")
DROPPED = Metric("clipspot_frames_dropped", "counter",
                 "Frames skipped by the stream's drop policy (answered flagged dropped)",
                 ("policy",))
LATENCY = Metric("clipspot_spot_latency_seconds", "histogram",
                 "Time from a decoded frame entering its stream's queue to its answer")
QUEUE_DEPTH = Metric("clipspot_queue_depth", "gauge", "Decoded frames waiting, all streams")
ACTIVE_STREAMS = Metric("clipspot_active_streams", "gauge", "StreamSpot calls open")
ACTIVE_TRACKS = Metric("clipspot_active_tracks", "gauge", "Live word tracks, all streams")
WORDS_READ = Metric("clipspot_words_read", "counter",
                    "Words given to the reader (VideoRunner.words_read)")
KEYFRAMES = Metric("clipspot_keyframes", "counter",
                   "Frames the detector ran on (VideoRunner.frames_spotted); the frames between "
                   "keyframes are followed by motion, which costs little")
PROMPT_CACHE = Metric("clipspot_prompt_cache_lookups", "counter",
                      "Custom-prompt embedding lookups (hit: local or Redis)", ("result",))
STREAMS_ENDED = Metric("clipspot_streams_ended", "counter",
                       "StreamSpot calls ended (or refused), by gRPC status code", ("code",))

METRICS = (FRAMES_IN, FRAMES_OUT, FRAMES_IN_ALL, FRAMES_OUT_ALL, DROPPED, LATENCY, QUEUE_DEPTH,
           ACTIVE_STREAMS, ACTIVE_TRACKS, WORDS_READ, KEYFRAMES, PROMPT_CACHE, STREAMS_ENDED)


class MetricSink(Protocol):
    """Where one mode puts the numbers. `labels` has exactly the metric's label names."""

    def inc(self, metric: Metric, value: float, labels: Mapping[str, str]) -> None: ...

    def set(self, metric: Metric, value: float, labels: Mapping[str, str]) -> None: ...

    def observe(self, metric: Metric, value: float, labels: Mapping[str, str]) -> None: ...

    def remove(self, metric: Metric, labels: Mapping[str, str]) -> None: ...


class Recorder:
    """The server's side of the metrics; `sink` None records nothing (library use, tests).

    `cache`: the prompt cache's counters in this process, turned into counter increments by
    `sync_cache` (CacheStats counts cumulatively, in the cache's own threads).
    """

    def __init__(self, sink: MetricSink | None = None, cache: CacheStats | None = None) -> None:
        self.sink = sink
        self.cache = cache
        self._lock = threading.Lock()
        self._gauges: Tally[Metric] = Tally()
        self._open_ids: Tally[str] = Tally()  # one stream_id may be open on several calls
        self._cache_seen = (0, 0)

    def stream(self, stream_id: str, drop_policy: str) -> StreamMeter:
        label = stream_id[:MAX_LABEL_CHARS] or "-"
        with self._lock:
            self._open_ids[label] += 1
        return StreamMeter(self, label, drop_policy)

    def streams_open(self, count: int) -> None:
        self._set(ACTIVE_STREAMS, count)

    def stream_ended(self, code: str) -> None:
        self._inc(STREAMS_ENDED, 1, code=code)

    def sync_cache(self) -> None:
        if self.cache is None or self.sink is None:
            return
        stats = self.cache.as_dict()
        now = (stats["local_hits"] + stats["redis_hits"], stats["misses"])
        with self._lock:
            seen, self._cache_seen = self._cache_seen, now
        for result, new, old in (("hit", now[0], seen[0]), ("miss", now[1], seen[1])):
            if new > old:
                self._inc(PROMPT_CACHE, new - old, result=result)

    def _add_to_gauge(self, metric: Metric, delta: float) -> None:
        with self._lock:
            self._gauges[metric] += delta  # type: ignore[assignment]
            value = self._gauges[metric]
        self._set(metric, value)

    def _close_stream(self, label: str) -> None:
        with self._lock:
            self._open_ids[label] -= 1
            last = self._open_ids[label] <= 0
            if last:
                del self._open_ids[label]
        if last and self.sink is not None:
            for metric in (FRAMES_IN, FRAMES_OUT):
                self.sink.remove(metric, {"stream": label})

    def _inc(self, metric: Metric, value: float, **labels: str) -> None:
        if self.sink is not None:
            self.sink.inc(metric, value, labels)

    def _set(self, metric: Metric, value: float, **labels: str) -> None:
        if self.sink is not None:
            self.sink.set(metric, value, labels)

    def _observe(self, metric: Metric, value: float, **labels: str) -> None:
        if self.sink is not None:
            self.sink.observe(metric, value, labels)


class StreamMeter:
    """One open stream's recording hooks (the stream core calls these on the event loop).

    Cumulative numbers the stream already keeps (drops, words read) are passed as they are;
    the meter turns them into increments, and its share of the gauges into deltas.
    """

    def __init__(self, recorder: Recorder, label: str, drop_policy: str) -> None:
        self.recorder = recorder
        self.label = label
        self.drop_policy = drop_policy
        self._queued = 0
        self._tracks = 0
        self._dropped = 0
        self._words = 0
        self._keyframes = 0
        self._closed = False

    def decoded(self, queue_depth: int, dropped_total: int) -> None:
        """A decoded frame entered the queue (which then holds `queue_depth` frames)."""
        rec = self.recorder
        rec._inc(FRAMES_IN, 1, stream=self.label)
        rec._inc(FRAMES_IN_ALL, 1)
        if dropped_total > self._dropped:
            rec._inc(DROPPED, dropped_total - self._dropped, policy=self.drop_policy)
            self._dropped = dropped_total
        self._queue(queue_depth)

    def answered(self, latency_s: float, queue_depth: int, words_read: int, tracks: int,
                 keyframes: int = 0) -> None:
        """A FrameResult is on its way; the runner has read `words_read` words and detected
        on `keyframes` frames so far."""
        rec = self.recorder
        rec._inc(FRAMES_OUT, 1, stream=self.label)
        rec._inc(FRAMES_OUT_ALL, 1)
        rec._observe(LATENCY, latency_s)
        if words_read > self._words:
            rec._inc(WORDS_READ, words_read - self._words)
            self._words = words_read
        if keyframes > self._keyframes:
            rec._inc(KEYFRAMES, keyframes - self._keyframes)
            self._keyframes = keyframes
        self._queue(queue_depth)
        self._track_count(tracks)

    def _queue(self, depth: int) -> None:
        self.recorder._add_to_gauge(QUEUE_DEPTH, depth - self._queued)
        self._queued = depth

    def _track_count(self, tracks: int) -> None:
        self.recorder._add_to_gauge(ACTIVE_TRACKS, tracks - self._tracks)
        self._tracks = tracks

    def close(self) -> None:
        """The stream is over: its gauge shares go, and its `stream` series."""
        if self._closed:
            return
        self._closed = True
        self._queue(0)
        self._track_count(0)
        self.recorder._close_stream(self.label)


class PrometheusSink:
    """prometheus-client metrics in `registry` (one per server, so tests can run several)."""

    def __init__(self, registry: object) -> None:
        import prometheus_client as prom

        self.registry = registry
        self._metrics: dict[Metric, object] = {}
        for metric in METRICS:
            if metric.kind == "counter":
                made = prom.Counter(metric.name, metric.help, metric.labels, registry=registry)
            elif metric.kind == "gauge":
                made = prom.Gauge(metric.name, metric.help, metric.labels, registry=registry)
            else:
                made = prom.Histogram(metric.name, metric.help, metric.labels,
                                      registry=registry, buckets=LATENCY_BUCKETS_S)
            self._metrics[metric] = made

    def _child(self, metric: Metric, labels: Mapping[str, str]):  # type: ignore[no-untyped-def]
        made = self._metrics[metric]
        return made.labels(**labels) if metric.labels else made  # type: ignore[attr-defined]

    def inc(self, metric: Metric, value: float, labels: Mapping[str, str]) -> None:
        self._child(metric, labels).inc(value)

    def set(self, metric: Metric, value: float, labels: Mapping[str, str]) -> None:
        self._child(metric, labels).set(value)

    def observe(self, metric: Metric, value: float, labels: Mapping[str, str]) -> None:
        self._child(metric, labels).observe(value)

    def remove(self, metric: Metric, labels: Mapping[str, str]) -> None:
        made = self._metrics[metric]
        # KeyError: the stream ended before its first frame, so it has no series to remove.
        with contextlib.suppress(KeyError):
            made.remove(*(labels[name] for name in metric.labels))  # type: ignore[attr-defined]


class RaySink:
    """`ray.serve.metrics` (Serve adds deployment, replica and application tags). Ray exports
    them on each node's metrics port with its `ray_` prefix; it cannot remove a series, so
    the `stream` label is dropped here and per-stream counters sum over the replica."""

    def __init__(self) -> None:
        from ray.serve import metrics as ray_metrics

        self._metrics: dict[Metric, object] = {}
        for metric in METRICS:
            keys = tuple(name for name in metric.labels if name != "stream")
            tags = keys or None
            if metric.kind == "counter":
                made = ray_metrics.Counter(metric.name, metric.help, tag_keys=tags)
            elif metric.kind == "gauge":
                made = ray_metrics.Gauge(metric.name, metric.help, tag_keys=tags)
            else:
                made = ray_metrics.Histogram(metric.name, metric.help,
                                             boundaries=list(LATENCY_BUCKETS_S), tag_keys=tags)
            self._metrics[metric] = made

    @staticmethod
    def _tags(labels: Mapping[str, str]) -> dict[str, str]:
        return {name: value for name, value in labels.items() if name != "stream"}

    def inc(self, metric: Metric, value: float, labels: Mapping[str, str]) -> None:
        self._metrics[metric].inc(value, tags=self._tags(labels))  # type: ignore[attr-defined]

    def set(self, metric: Metric, value: float, labels: Mapping[str, str]) -> None:
        self._metrics[metric].set(value, tags=self._tags(labels))  # type: ignore[attr-defined]

    def observe(self, metric: Metric, value: float, labels: Mapping[str, str]) -> None:
        self._metrics[metric].observe(value, tags=self._tags(labels))  # type: ignore[attr-defined]

    def remove(self, metric: Metric, labels: Mapping[str, str]) -> None:
        return None  # Ray keeps every series it has seen; none carries a stream label here


def serve_metrics(registry: object, host: str, port: int) -> tuple[object, int]:
    """Serve `registry` on http://host:port/metrics from a daemon thread; (server, port).
    Port 0 lets the OS pick (tests). Stop it with `server.shutdown()`."""
    import prometheus_client as prom

    httpd, _thread = prom.start_http_server(port, addr=host.strip("[]"),
                                            registry=registry)  # type: ignore[arg-type]
    return httpd, int(httpd.server_port)

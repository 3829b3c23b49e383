"""The master's live view: `MasterNode.status()` over HTTP, and `pccl status`.

`MasterNode(..., http_address="host:port")` (or `pccl_master --http-address`) serves, from
a thread of its own (the standard library's ThreadingHTTPServer):

    /          a page that draws the run live from /status (pccl/_status_page.py)
    /status    the run as JSON: MasterNode.status(), with peer ids as strings (they pass
               2^53, beyond which JavaScript's numbers lose digits)
    /metrics   the same counters and gauges in Prometheus's text format (prometheus_client)

The C++ master publishes its state for other threads now and then (at most every 50 ms
after a change, at least every second: csrc/pccl/master/run_status.h), so a scrape never
waits on the master's loop. `pccl status HOST:PORT` fetches /status and prints it as
tables (`format_status`).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pccl._status_page import PAGE

Status = dict[str, Any]


def ids_as_strings(status: Status) -> Status:
    """`status` with every peer id as a decimal string (for JSON readers such as the page)."""
    out = dict(status)
    out["peers"] = [{**p, "peer_id": str(p["peer_id"])} for p in status["peers"]]
    out["groups"] = [{**g, "ring": [str(i) for i in g["ring"]],
                      "links": [{**link, "from": str(link["from"]), "to": str(link["to"])}
                                for link in g["links"]]} for g in status["groups"]]
    return out


def metrics_text(status: Status) -> bytes:
    """`status` in Prometheus's text exposition format."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                        HistogramMetricFamily)

    class Collector:
        def collect(self) -> Iterator[Any]:
            counters = status["counters"]
            ops = CounterMetricFamily("pccl_operations", "Collectives the master decided, "
                                      "by outcome and, for failures, status code",
                                      labels=["outcome", "code"])
            ops.add_metric(["succeeded", ""], counters.get("ops_succeeded", 0))
            for name, value in counters.items():
                if name.startswith("ops_failed_"):
                    ops.add_metric(["failed", name[len("ops_failed_"):]], value)
            yield ops
            yield CounterMetricFamily("pccl_bytes_sent", "Bytes the members sent for "
                                      "collectives, as they reported them",
                                      value=counters.get("bytes_sent", 0))
            for name, doc in (("heartbeat_rtt", "Round trips of the peers' heartbeats to the "
                               "master, as the peers measured them"),
                              ("member_op", "Each member's time for each collective, from "
                               "its start to its report")):
                h = status["histograms"].get(name)
                if h is None:
                    continue
                cumulative, buckets = 0, []
                for le, n in h["buckets"]:
                    cumulative += n
                    buckets.append(("+Inf" if le is None else repr(le), cumulative))
                yield HistogramMetricFamily(f"pccl_{name}_seconds", doc, buckets=buckets,
                                            sum_value=h["sum"])
            membership = CounterMetricFamily("pccl_membership_events",
                                             "Joins, departures and topology epochs",
                                             labels=["event"])
            for event in ("joins", "departures", "epochs", "resumes", "restarts"):
                membership.add_metric([event], counters.get(event, 0))
            yield membership
            peers = GaugeMetricFamily("pccl_peers", "Peers in the run", labels=["state"])
            members = sum(1 for p in status["peers"] if p["member"])
            peers.add_metric(["member"], members)
            peers.add_metric(["pending"], len(status["peers"]) - members)
            yield peers
            yield GaugeMetricFamily("pccl_epoch", "The topology epoch", value=status["epoch"])
            in_flight = GaugeMetricFamily("pccl_operations_in_flight",
                                          "Collectives reported by some members, undecided",
                                          labels=["peer_group"])
            bandwidth = GaugeMetricFamily("pccl_link_bytes_per_second",
                                          "Bandwidth last measured along each ring link",
                                          labels=["peer_group", "from", "to"])
            revision = GaugeMetricFamily("pccl_shared_state_revision",
                                         "Revision of each group's last shared-state sync",
                                         labels=["peer_group"])
            for g in status["groups"]:
                in_flight.add_metric([str(g["peer_group"])], g["operations_in_flight"])
                if g["state_revision"] is not None:
                    revision.add_metric([str(g["peer_group"])], g["state_revision"])
                for link in g["links"]:
                    bandwidth.add_metric([str(g["peer_group"]), str(link["from"]),
                                          str(link["to"])], link["bytes_per_second"])
            yield in_flight
            yield bandwidth
            yield revision
            rto = GaugeMetricFamily("pccl_peer_rto_seconds", "Each peer's master connection's "
                                    "retransmission timeout, at its last heartbeat",
                                    labels=["peer_id"])
            for p in status["peers"]:
                rto.add_metric([str(p["peer_id"])], p["rto_s"])
            yield rto

    registry = CollectorRegistry()
    registry.register(Collector())
    return generate_latest(registry)


class StatusServer:
    """Serves /status and /metrics for `get_status` on `host:port` (port 0: any)."""

    def __init__(self, host: str, port: int, get_status: Callable[[], Status]):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    body, kind = PAGE.encode(), "text/html; charset=utf-8"
                elif path == "/status":
                    body = json.dumps(ids_as_strings(get_status())).encode()
                    kind = "application/json"
                elif path == "/metrics":
                    body, kind = metrics_text(get_status()), "text/plain; version=0.0.4"
                else:
                    self.send_error(404, "pccl master: /, /status or /metrics")
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # scrapes are not worth a line each

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name=f"pccl-master-http {host}:{port}")
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def fetch_status(address: str, timeout: float = 10.0) -> Status:
    """GET http://address/status."""
    with urllib.request.urlopen(f"http://{address}/status", timeout=timeout) as reply:
        result: Status = json.loads(reply.read())
        return result


def format_status(status: Status) -> str:
    """The run as tables, like nvidia-smi prints GPUs."""
    members = sum(1 for p in status["peers"] if p["member"])
    lines = [f"pccl run: epoch {status['epoch']} ({status['epoch_cause'] or 'no peers yet'}), "
             f"{members} members, {len(status['peers']) - members} pending", ""]
    lines.append(f"{'peer id':>20}  {'address':<28} {'group':>5}  {'state':<8} "
                 f"{'reachable':<9} {'idle s':>7} {'rto ms':>7} {'beat ms':>7}")
    for p in status["peers"]:
        reachable = {None: "?", True: "yes", False: "no"}[p["reachable"]]
        lines.append(f"{p['peer_id']:>20}  {p['host'] + ':' + str(p['port']):<28} "
                     f"{p['peer_group']:>5}  {'member' if p['member'] else 'pending':<8} "
                     f"{reachable:<9} {p['idle_s']:>7.1f} {p['rto_s'] * 1e3:>7.0f} "
                     f"{p['heartbeat_rtt_s'] * 1e3:>7.1f}")
    for g in status["groups"]:
        revision = g["state_revision"]
        lines += ["", f"group {g['peer_group']}: ring epoch {g['ring_epoch']}, "
                  f"{g['operations_in_flight']} operations in flight, shared state at "
                  f"{'no sync yet' if revision is None else f'revision {revision}'}"]
        for link in g["links"]:
            rate = link["bytes_per_second"]
            shown = f"{rate / 1e6:.1f} MB/s" if rate else "not measured"
            lines.append(f"  {link['from']:>20} -> {link['to']:<20} {shown}")
    if status["events"]:
        lines += ["", "last events:"]
        for e in status["events"][-10:]:
            when = time.strftime("%H:%M:%S", time.localtime(e["time"]))
            lines.append(f"  {when} {e['kind']:<6} {e['text']}")
    return "\n".join(lines)

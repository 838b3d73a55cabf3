#!/usr/bin/env python3
"""Flow predictor backed by nDPI, through nfstream's NFStreamer.

Usage: ndpi_predict.py PCAP [--debug]

For every TCP/UDP flow of PCAP prints one JSON line:
  {"src": "ip:port", "dst": "ip:port", "proto": "tcp"|"udp", "service": null|id, ...}
plus informational fields (nDPI application name, IP-based protocol, guessed flag,
confidence, SNI). The "service" is derived at run time from nDPI's verdict only:

  1. application_name (nfstream fills it with nDPI's ndpi_protocol2name(), e.g.
     "TLS.Zoom", "STUN.Skype_TeamsCall", "DNS.Teams") is mapped with the same rule the
     scorer applies to ndpiReader's "[proto: ...]" field: a DNS flow is never a service,
     otherwise the first name found in the NDPI table wins.
  2. If every name in application_name is a generic protocol (TLS, QUIC, STUN, DTLS,
     RTP, SRTP, RTCP, HTTP, Unknown), fall back to nDPI's IP-address classification:
     ndpi_protocol.protocol_by_ip of the flow's detected protocol (the value ndpiReader
     prints as "[IP: id/Name]"). nfstream does not expose it as a flow attribute, so a
     small NFPlugin reads it from the flow's C structure in on_expire (just before
     nfstream frees that structure) and turns the id into a name with nDPI's own
     ndpi_get_proto_name(), exported by the nfstream engine library.

Nothing is read from the .out files.
"""
import ipaddress
import json
import os
import sys

from cffi import FFI
from nfstream import NFPlugin, NFStreamer
from nfstream.engine import create_engine

# Same tables as the scorer (../shared/tools/eval_flows.py beside the checkout).
NDPI = {"Zoom": "zoom", "Teams": "teams", "Skype_Teams": "teams", "Skype_TeamsCall": "teams",
        "TeamsCall": "teams", "Skype": "teams", "SkypeCall": "teams", "Webex": "webex",
        "GoogleMeet": "google-meet", "GoogleCall": "google-meet", "GoogleHangoutDuo": "google-meet",
        "GoTo": "goto", "GoToMeeting": "goto"}
GENERIC = {"TLS", "QUIC", "STUN", "DTLS", "RTP", "SRTP", "RTCP", "HTTP", "Unknown"}


def label(app_name):
    """Map an nDPI 'Master.App' name to a service id (scorer's rule)."""
    names = app_name.split('.') if app_name else []
    if names and names[0] == 'DNS':
        return None
    for n in names:
        if n in NDPI:
            return NDPI[n]
    return None


def _engine_so_path():
    import _lib_engine  # the nfstream engine (cffi module, nDPI linked in statically)
    return _lib_engine.__file__


class NDPIProtoNames:
    """nDPI protocol id -> name, asked of nDPI itself (ndpi_get_proto_name)."""

    def __init__(self):
        self.ffi, self.lib = create_engine()
        checker = self.ffi.new("struct dissector_checker *")
        checker.flow_size = self.ffi.sizeof("struct ndpi_flow_struct")
        checker.flow_tcp_size = self.ffi.sizeof("struct ndpi_flow_tcp_struct")
        checker.flow_udp_size = self.ffi.sizeof("struct ndpi_flow_udp_struct")
        self.mod = self.lib.dissector_init(checker)
        if self.mod == self.ffi.NULL:
            raise RuntimeError("nDPI dissector_init failed")
        self.lib.dissector_configure(self.mod)
        self.ffi2 = FFI()
        self.ffi2.cdef("char *ndpi_get_proto_name(void *ndpi_mod, uint16_t proto_id);")
        self.lib2 = self.ffi2.dlopen(_engine_so_path())
        self.mod2 = self.ffi2.cast("void *", int(self.ffi.cast("uintptr_t", self.mod)))
        self.cache = {}

    def name(self, proto_id):
        if proto_id not in self.cache:
            p = self.lib2.ndpi_get_proto_name(self.mod2, proto_id)
            self.cache[proto_id] = self.ffi2.string(p).decode() if p != self.ffi2.NULL else str(proto_id)
        return self.cache[proto_id]


class NDPIIPClass(NFPlugin):
    """Reads nDPI's IP-based classification before nfstream frees the flow's C struct."""

    def on_init(self, packet, flow):
        flow.udps.ndpi_ip_proto_id = 0
        flow.udps.ndpi_master_id = 0
        flow.udps.ndpi_app_id = 0

    def on_expire(self, flow):
        c = getattr(flow, '_C', None)
        if c is None:
            return
        dp = c.detected_protocol
        flow.udps.ndpi_ip_proto_id = int(dp.protocol_by_ip)
        flow.udps.ndpi_master_id = int(dp.proto.master_protocol)
        flow.udps.ndpi_app_id = int(dp.proto.app_protocol)


def endpoint(ip, port):
    try:
        if ipaddress.ip_address(ip).version == 6:
            return f"[{ip}]:{port}"
    except ValueError:
        if ':' in ip:
            return f"[{ip}]:{port}"
    return f"{ip}:{port}"


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    pcap = sys.argv[1]
    names = NDPIProtoNames()
    ffi, lib = names.ffi, names.lib
    print(json.dumps({"info": "engine", "nfstream_engine": ffi.string(lib.engine_lib_version()).decode(),
                      "ndpi": ffi.string(lib.engine_lib_ndpi_version()).decode(),
                      "pcap": os.path.basename(pcap)}))
    year = 365 * 24 * 3600
    streamer = NFStreamer(source=pcap, decode_tunnels=True, statistical_analysis=False,
                          splt_analysis=0, n_dissections=255, n_meters=1,
                          idle_timeout=year, active_timeout=year, udps=[NDPIIPClass()])
    for f in streamer:
        if f.protocol == 6:
            proto = "tcp"
        elif f.protocol == 17:
            proto = "udp"
        else:
            continue
        app = f.application_name or "Unknown"
        ip_id = f.udps.ndpi_ip_proto_id
        ip_name = names.name(ip_id)
        svc = label(app)
        source = "dpi" if svc else None
        if svc is None and set(app.split('.')) <= GENERIC:
            svc = label(ip_name)
            source = "ip" if svc else None
        print(json.dumps({
            "src": endpoint(f.src_ip, f.src_port), "dst": endpoint(f.dst_ip, f.dst_port),
            "proto": proto, "service": svc, "service_from": source,
            "ndpi_app": app, "ndpi_ip": f"{ip_id}/{ip_name}",
            "ndpi_ids": f"{f.udps.ndpi_master_id}.{f.udps.ndpi_app_id}",
            "guessed": f.application_is_guessed, "confidence": f.application_confidence,
            "category": f.application_category_name, "sni": f.requested_server_name,
            "packets": f.bidirectional_packets,
        }))
    return 0


if __name__ == '__main__':
    sys.exit(main())

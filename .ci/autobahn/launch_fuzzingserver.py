# -*- coding: utf-8 -*-
# Python 2.7 code (it runs in the autobahntestsuite virtualenv): no py3-only rewrites.
# ruff: noqa: UP009, UP010, UP031, I001
"""Run the Autobahn|Testsuite fuzzing server bound to 127.0.0.1 only (Python 2.7).

`wstest -m fuzzingserver` listens on every interface (Autobahn's listenWS defaults to
interface='') and starts a web server on 8080. This launcher builds the same
FuzzingServerFactory that wstest builds, but listens on loopback only and starts no web
server unless --webport is given (and then on loopback too).

    .autobahn/venv/bin/python .ci/autobahn/launch_fuzzingserver.py --spec spec.json --port 9001

The port on the command line wins over the one in the spec's "url". Stop it with
SIGTERM or SIGINT (Twisted stops the reactor and exits 0).
"""
from __future__ import print_function

# Must come first: installs the best Twisted reactor (as wstest does).
import autobahntestsuite.choosereactor  # noqa: F401

import argparse
import json
import os
import sys

import pkg_resources
from twisted.internet import reactor
from twisted.web.server import Site
from twisted.web.static import File

import autobahntestsuite.fuzzing as fuzzing
from autobahn.twisted.websocket import listenWS

LOOPBACK = "127.0.0.1"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="fuzzingserver spec (JSON)")
    parser.add_argument("--port", type=int, required=True, help="WebSocket port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--webport", type=int, default=0,
                        help="also serve the HTML reports on 127.0.0.1:WEBPORT (default 0: no web server)")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    with open(args.spec) as f:
        spec = json.load(f)
    spec["url"] = "ws://%s:%d" % (LOOPBACK, args.port)
    if "outdir" in spec:
        # Relative to the spec file, not to wherever we were started from.
        spec["outdir"] = os.path.join(os.path.dirname(os.path.abspath(args.spec)), spec["outdir"])

    factory = fuzzing.FuzzingServerFactory(spec, args.debug)
    port = listenWS(factory, interface=LOOPBACK)
    host = port.getHost()
    if args.port == 0:
        # Port 0: the OS picked a free port; tell the factory, as if the spec named it.
        # (setSessionParameters would reset the Server header and subprotocols.)
        factory.url = "ws://%s:%d" % (LOOPBACK, host.port)
        factory.port = factory.externalPort = host.port
    if args.webport:
        webdir = File(pkg_resources.resource_filename("autobahntestsuite", "web/fuzzingserver"))
        webdir.putChild("cwd", File("."))
        reactor.listenTCP(args.webport, Site(webdir), interface=LOOPBACK)
    # The runner waits for this line (and for the port) before connecting.
    print("LISTENING ws://%s:%d pid=%d" % (host.host, host.port, os.getpid()))
    sys.stdout.flush()
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

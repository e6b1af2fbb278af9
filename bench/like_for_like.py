"""The peer comparison with an https redirect URI: both servers remember the consent, like for like.

    make bench-serve          # in another terminal
    python3 bench/like_for_like.py http://127.0.0.1:5200 --username demo@example.com \\
        --password demo-password --resource http://127.0.0.1:8001/mcp \\
        --introspect-auth basic:rs_demo:SECRET --scope crm.objects.contacts.read --runs 2

The peer benchmark's `compare.py` (../shared/peer-bench, or --peer-bench DIR) registers its client
with a loopback redirect URI. For such a client authserver asks for consent on every
authorization request (RFC 8252 §8.6: a loopback redirect cannot prove which app receives the
code), so its "signed-in flow" is three requests, one of them an HTML page and one a form POST,
where the peer's is a redirect: the two servers do different work. This runs compare.py itself,
unchanged (its order, sizes, fresh peer per run, table and ratios), with every flow_bench.py run
of both servers given `--redirect-uri` (default https://app.example.com/callback, as ChatGPT's
connector registers an https one): consent asked once in the fresh-browser flow, then
remembered by both. Every argument but --peer-bench and --redirect-uri is compare.py's own.
Standard library only; prints numbers, asserts nothing (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=False)
    parser.add_argument("--peer-bench", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "peer-bench",
                        help="the peer benchmark's directory (compare.py, flow_bench.py)")
    parser.add_argument("--redirect-uri", default="https://app.example.com/callback",
                        help="the redirect URI both servers' clients register")
    ours, theirs = parser.parse_known_args()
    if "-h" in theirs or "--help" in theirs:
        parser.print_help()
        return 0
    if not (ours.peer_bench / "compare.py").is_file():
        parser.error(f"no compare.py in {ours.peer_bench} (give --peer-bench DIR)")
    sys.path.insert(0, str(ours.peer_bench))
    import compare

    measure = compare.bench

    def bench(url, extra, out, n, flow_n):
        return measure(url, [*extra, "--redirect-uri", ours.redirect_uri], out, n, flow_n)

    compare.bench = bench
    sys.argv = [str(ours.peer_bench / "compare.py"), *theirs]
    return compare.main()


if __name__ == "__main__":
    sys.exit(main())

"""Real peer-to-peer check between every pair of visible GPUs (run in the training Python).

For each ordered pair (a, b): enable peer access when CUDA says it can, copy a known tensor from GPU a
to GPU b, and compare it with the original. Prints one JSON object. The caller runs this under a timeout:
a hang is the failure mode of broken P2P (GeForce on some drivers, PCIe ACS/IOMMU redirection).
Self-contained: stdlib + torch.
"""

import json
import sys


def main() -> int:
    try:
        import torch
    except Exception as exc:  # no torch in this Python
        print(json.dumps({"ok": None, "status": "no_torch", "detail": str(exc), "pairs": []}))
        return 0
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        print(json.dumps({"ok": None, "status": "too_few_gpus", "detail": f"{count} CUDA device(s)", "pairs": []}))
        return 0
    pairs = []
    n = torch.cuda.device_count()
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            peer = bool(torch.cuda.can_device_access_peer(a, b))
            entry = {"a": a, "b": b, "peer_access": peer}
            try:
                src = torch.arange(1 << 22, dtype=torch.float32, device=f"cuda:{a}")
                dst = src.to(f"cuda:{b}")
                torch.cuda.synchronize(a)
                torch.cuda.synchronize(b)
                entry["ok"] = bool(torch.equal(dst.cpu(), src.cpu()))
                entry["detail"] = "copy verified" if entry["ok"] else "data differs after the copy"
            except Exception as exc:
                entry["ok"] = False
                entry["detail"] = f"{type(exc).__name__}: {exc}"
            pairs.append(entry)
            print(json.dumps({"progress": entry}), file=sys.stderr, flush=True)
    ok = all(p["ok"] for p in pairs)
    bad = [f"{p['a']}->{p['b']}" for p in pairs if not p["ok"]]
    print(json.dumps({"ok": ok, "status": "done", "detail": "all pairs verified" if ok else
                      "failed: " + ", ".join(bad), "pairs": pairs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

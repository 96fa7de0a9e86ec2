"""The part of NVIDIA's DLLogger that ncf.py calls: JSON lines prefixed `DLLL ` (the format
ncf-train writes and scripts/bench-train.sh reads) and a plain stdout backend."""
import enum
import json
import time


class Verbosity(enum.IntEnum):
    OFF = -1
    DEFAULT = 0
    VERBOSE = 1


def _plain(value):
    return value.item() if hasattr(value, "item") else value


class JSONStreamBackend:
    def __init__(self, verbosity, filename, **_ignored):
        self.file = open(filename, "a")

    def log(self, kind, step, data):
        record = {"timestamp": time.time(), "type": kind, "step": list(step) if isinstance(step, tuple) else step,
                  "data": {k: _plain(v) for k, v in data.items()}}
        self.file.write("DLLL " + json.dumps(record, default=str) + "\n")
        self.file.flush()


class StdOutBackend:
    def __init__(self, verbosity, **_ignored):
        pass

    def log(self, kind, step, data):
        if kind == "LOG":
            print("DLL", step, {k: _plain(v) for k, v in data.items()}, flush=True)


_backends = []


def init(backends):
    _backends[:] = backends


def metadata(name, data):
    for b in _backends:
        b.log("METADATA", name, data)


def log(step, data, verbosity=0):
    for b in _backends:
        b.log("LOG", step, data)


def flush():
    pass

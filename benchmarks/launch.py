"""Start a command and report its CPU time and peak RSS (``launch.py RESULT_JSON COMMAND...``).

A process's peak RSS as the kernel reports it includes the memory of the process it was
forked from (Linux keeps the high-water mark across ``exec``). Measured commands are
therefore forked from this small launcher, not from the benchmark process, which holds
the replayed pages in memory. stdin, stdout and stderr pass straight through.
"""

import json
import os
import subprocess
import sys
from pathlib import Path


def main() -> int:
    result, command = sys.argv[1], sys.argv[2:]
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    report = {"cpu": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss}
    Path(result).write_text(json.dumps(report))
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())

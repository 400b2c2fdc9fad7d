"""Run a search script in a child process, SIGKILL it during its second trial, rerun it.

The scripts (singlepath_search.py, multipath_search.py) append "start <trial id>" and
"end <trial id>" lines to a log file, which shows when to kill and what ran.
"""

import os
import signal
import subprocess
import sys
import time

# The log after a rerun: the finished trial 0000 is not run again, and the interrupted 0001
# is retried once.
RESUMED_LOG = [
    "start 0000", "end 0000", "start 0001", "start 0001", "end 0001", "start 0002", "end 0002"
]


def read_log(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().split("\n")[:-1]


def kill_during_second_trial(script, args, log, timeout):
    """Start `script` with `args`, SIGKILL it 0.3 s after trial 0001 starts, and return its
    command and environment for the rerun."""
    command = [sys.executable, script, *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while "start 0001" not in read_log(log):
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "the search did not reach its second trial"
        time.sleep(0.2)
    # On an idle machine a trial takes a few seconds, so 0.3 s falls inside the second trial.
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return command, env


def rerun(command, env, timeout):
    """Run `command` to the end and check that it exits with status 0."""
    result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr.decode()[-3000:]

"""Run a check script in a process of its own: a crash inside an MXNet kernel then fails
the one test that ran it, with the script's last words, instead of killing the suite."""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_script(script, *args, timeout=900):
    """Run tests/<script> with ``args``; return its stdout.  Fails the calling test with
    the tail of stdout and stderr when the process fails or dies (a signal is named)."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '2'))
    proc = subprocess.run([sys.executable, os.path.join(HERE, script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        how = (f'was killed by signal {-proc.returncode}' if proc.returncode < 0
               else f'exited with status {proc.returncode}')
        raise AssertionError(f'{script} {" ".join(map(str, args))} {how}\n'
                             f'--- stdout (tail)\n{proc.stdout[-3000:]}\n'
                             f'--- stderr (tail)\n{proc.stderr[-3000:]}')
    return proc.stdout


def result_of(stdout):
    """The ``result {json}`` line a check script prints last."""
    lines = [l for l in stdout.splitlines() if l.startswith('result ')]
    assert lines, f'no result line in:\n{stdout[-2000:]}'
    return json.loads(lines[-1][len('result '):])

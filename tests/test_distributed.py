"""Data parallelism with derivative layers: MXNet's dist_sync parameter server on loopback
(a scheduler, a server and two workers), and split_and_load over two CPU contexts."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'examples', 'distributed'))
import launch  # noqa: E402

TRAIN = os.path.join(ROOT, 'examples', 'distributed', 'train_pinn.py')


def _single(path, *extra):
    subprocess.run([sys.executable, TRAIN, '--steps', '10', '--out', path, *extra],
                   check=True, capture_output=True, timeout=300,
                   env=dict(os.environ, OMP_NUM_THREADS='1'))


def test_dist_sync_two_workers_match_one_process(tmp_path):
    dist, single = str(tmp_path / 'dist.params'), str(tmp_path / 'single.params')
    launch.run_distributed(workers=2, steps=10, out=dist, timeout=300)
    _single(single)
    assert launch.compare(dist, single) < 1e-5  # float32, summed in another order


def test_split_and_load_over_two_cpu_contexts(tmp_path):
    one, two = str(tmp_path / 'one.params'), str(tmp_path / 'two.params')
    _single(one)
    _single(two, '--contexts', '2')
    assert launch.compare(one, two) < 1e-5

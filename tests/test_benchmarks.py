# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The benchmark runner: its aggregation over repeats, the side-by-side pairing, the
verdicts on the targets, and one real run of the smallest workload."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))

import run  # noqa: E402  (benchmarks/run.py)
import taylor as taylor_bench  # noqa: E402  (benchmarks/taylor.py)


def _run(fw, w, m, rep, median, rss=100.0, inter=None):
    r = {'framework': fw, 'workload': w, 'method': m, 'repeat': rep, 'median_ms': median,
         'min_ms': median / 2, 'steps': 20, 'peak_rss_mb': rss}
    if inter is not None:
        r['interleaved_ratio'] = inter
    return r


def _synthetic():
    runs = []
    for rep, (mx_plain, mx_layer, th_layer) in enumerate([(10, 30, 40), (12, 20, 50),
                                                          (11, 90, 60)]):
        runs += [_run('mxnet', 'W2', 'plain', rep, mx_plain, rss=150),
                 _run('mxnet', 'W2', 'layer', rep, mx_layer, rss=200 + rep,
                      inter=mx_layer / mx_plain),
                 _run('torch', 'W2', 'layer', rep, th_layer)]
    return runs


def test_combine_takes_medians_over_repeats():
    rows = {(r['framework'], r['method']): r for r in run.combine(_synthetic())}
    layer = rows[('mxnet', 'layer')]
    assert layer['median_ms'] == 30 and layer['min_ms'] == 10 and layer['repeats'] == 3
    assert layer['peak_rss_mb'] == 202
    assert layer['interleaved_ratio'] == pytest.approx(30 / 10)
    assert run._median([1, 4, 2, 3]) == 2.5


def test_side_by_side_pairs_runs_of_the_same_repeat():
    text = run.side_by_side(_synthetic())
    # 30/40, 20/50, 90/60: paired by repeat, not by sorted times
    assert '0.75 0.40 1.50   median 0.75' in text


def test_each_peer_is_paired_with_its_own_method():
    runs = _synthetic() + [_run('jax', 'W2', 'layer', rep, m)
                           for rep, m in enumerate([60, 40, 45])]
    assert run.side_ratios(runs, 'W2', 'jax') == [0.5, 0.5, 2.0]
    assert run.side_ratios(runs, 'W2', 'jax', 'hessian_trace') == []
    text = run.side_by_side(runs)
    assert 'mxnet layer step / jax layer step' in text and '0.50 0.50 2.00' in text
    lines = run.targets(run.combine(runs), runs).splitlines()
    folx = next(ln for ln in lines if ln.strip().startswith('W2 step, mxnet / folx'))
    assert ' 0.500 ' in folx and folx.endswith(' met')


def test_value_differences_compare_each_peer_with_mxnet():
    runs = [dict(_run('mxnet', 'W2', 'layer', 0, 10), value=2.0),
            dict(_run('torch', 'W2', 'layer', 0, 10), value=2.0 * (1 + 1e-3)),
            dict(_run('jax', 'W2', 'layer', 0, 10), value=2.0),
            dict(_run('jax', 'W2', 'layer', 1, 10), value=5.0),  # not the first: ignored
            dict(_run('jax', 'W2', 'hessian_trace', 0, 10), value=1.0)]  # no mxnet twin
    lines = run.value_differences(runs).splitlines()[1:]
    assert len(lines) == 2
    assert next(ln for ln in lines if ' torch ' in ln).endswith('1.0e-03')
    assert next(ln for ln in lines if ' jax ' in ln).endswith('0.0e+00')


def test_targets_report_met_missed_and_unmeasured():
    runs = _synthetic()
    lines = run.targets(run.combine(runs), runs).splitlines()

    def line(name):
        return next(ln for ln in lines if ln.strip().startswith(name))
    assert line('W2 overhead').endswith(' met')  # 3.0 <= 4.5
    assert line('W2 step, mxnet / torch').endswith('MISSED')  # 0.75 > 0.7
    assert ' 1.347 ' in line('W2 peak memory')  # 202 / 150
    assert line('W1 overhead').endswith('not measured in this run')


def test_workload_tables_are_read_without_importing_the_frameworks():
    assert run.workload_methods('mxnet')['W2'][0] == 'plain'
    assert 'layer' in run.workload_methods('torch')['W2']
    assert run.workload_methods('jax')['LAP32'] == ['plain', 'layer']


def test_runner_measures_w1_in_child_processes(tmp_path):
    out = tmp_path / 'r.json'
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'run.py'),
                          '--only', 'W1', '--steps', '20', '--warmup', '2', '--out', str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text())
    # MXNet's defaults: no thread or tuning variable set for the children
    assert data['machine']['environment'] == 'defaults' and data['machine']['set'] == {}
    rows = {r['method']: r for r in data['results']}
    assert set(rows) == {'plain', 'layer', 'fd'}
    for m, r in rows.items():
        assert 0 < r['min_ms'] <= r['median_ms'] and r['steps'] >= 20
        assert ('interleaved_ratio' in r) == (m != 'plain')
        assert r['value'] > 0 and r['version'] == 'mxnet 1.9.1'  # the loss before training
    w1 = [ln for ln in res.stdout.splitlines() if ln.strip().startswith('W1 overhead')][0]
    assert f"{rows['layer']['interleaved_ratio']:7.3f}" in w1
    assert (tmp_path / 'r.txt').read_text().strip().endswith(res.stdout.strip()[-200:])


def _taylor_run(fw, method, rep, median, value):
    return {'framework': fw, 'case': 'U4', 'method': method, 'measure': 'eval', 'repeat': rep,
            'median_ms': median, 'min_ms': median / 2, 'steps': 20, 'value': value}


def test_taylor_table_gives_medians_ranges_time_ratios_and_value_differences():
    runs = [_taylor_run('mxnet', 'taylor', r, m, [1.0, -2.0]) for r, m in enumerate([3, 5, 4])]
    runs += [_taylor_run('torch', 'nested', r, m, [1.0, -2.2]) for r, m in enumerate([8, 9, 10])]
    runs.append({'framework': 'jax', 'case': 'U4', 'method': 'jet', 'measure': 'eval',
                 'repeat': 0, 'error': 'ImportError: jax'})
    rows = taylor_bench.summarize(runs)
    lines = taylor_bench.table(rows).splitlines()
    mine = next(ln for ln in lines if ' taylor ' in ln).split()
    theirs = next(ln for ln in lines if ' nested ' in ln).split()
    assert mine[4:8] == ['4.00', '3.00-5.00', '1.00x', '0.0e+00']
    assert theirs[4:8] == ['9.00', '8.00-10.00', '2.25x', '1.0e-01']  # 0.2 / max |value|
    assert next(ln for ln in lines if ' jet ' in ln).endswith('failed: ImportError: jax')


def test_taylor_benchmark_children_agree_on_u4():
    """Two real children: Taylor mode's u'''' and four nested InputGradients' agree."""
    values = {}
    for method in ('taylor', 'nested'):
        res = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'taylor.py'),
                              '--child', 'mxnet', 'U4', method, 'eval', '--steps', '10',
                              '--warmup', '1'], capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, PYTHONPATH=ROOT))
        assert res.returncode == 0, res.stderr[-2000:]
        out = json.loads(res.stdout.strip().splitlines()[-1])
        assert 0 < out['min_ms'] <= out['median_ms'] and out['steps'] >= 10
        values[method] = out['value']
    assert len(values['taylor']) == taylor_bench.SAMPLE
    assert taylor_bench._difference(values['nested'], values['taylor']) < 1e-5


def test_defaults_benchmark_runs_both_import_orders():
    import mxgradlayer as mg
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'defaults.py'),
                          '--steps', '3', '--repeat', '1'],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert len(lines) == 2 and 'mxnet first' in lines[0] and 'mxgradlayer first' in lines[1]
    assert 'MXNET_USE_OPERATOR_TUNING=None' in lines[0]
    tuning = mg._small_machine_settings(mg._usable_cores()).get('MXNET_USE_OPERATOR_TUNING')
    assert f'MXNET_USE_OPERATOR_TUNING={tuning}' in lines[1]
    for line in lines:
        times = dict(kv.rsplit('=', 1) for kv in line.split('\t')[1].replace(' plain', '_plain')
                     .replace(' layer', '_layer').split())
        assert len(times) == 6 and all(float(t) > 0 for t in times.values())

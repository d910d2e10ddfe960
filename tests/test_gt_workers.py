"""Ground-truth runs in worker processes (`close_jax.benchmarks.gt_workers`) and the runs file they
share (`gt_runs.RunsFile`): each run trained once, in a pinned single-threaded CPU process; a worker
that dies or fails stops the pool with the finished runs kept, and a rerun trains only the rest."""

import functools
import multiprocessing
import os

import helpers
import pytest

from close_jax import cpu_workers
from close_jax.benchmarks import gt_workers
from close_jax.benchmarks.gt_runs import RunsFile

JOBS = [(f'c{i}', s) for i in range(6) for s in (0, 1)]
two_cores = pytest.mark.skipif(len(cpu_workers.usable_cores()) < 2, reason='needs two usable cores')


def _pool(tmp_path, workers=2, jobs=JOBS, **fake):
  (tmp_path / 'log').mkdir(exist_ok=True)
  seen = []
  out = gt_workers.train_parallel(
    functools.partial(
      helpers.fake_gt_train, str(tmp_path / 'log'), workers=min(workers, len(jobs)), **fake
    ),
    jobs,
    16,
    str(tmp_path / 'gt_runs.csv'),
    workers,
    on_run=lambda *run: seen.append(run),
  )
  return out, seen


@two_cores
def test_every_run_once_in_pinned_single_threaded_cpu_workers(tmp_path):
  out, seen = _pool(tmp_path)
  expected = {job: helpers.fake_gt_accuracy(*job) for job in JOBS}
  assert out == expected and sorted((c, s) for c, s, _ in seen) == sorted(JOBS)
  assert RunsFile(str(tmp_path / 'gt_runs.csv')).read() == {
    (c, s, 16): acc for (c, s), acc in expected.items()
  }
  assert len((tmp_path / 'gt_runs.csv').read_text().splitlines()) == 1 + len(JOBS)  # once each
  log = helpers.fake_gt_log(tmp_path / 'log')
  assert len(log) == 2 and str(os.getpid()) not in log  # two processes, not this one
  trained = sorted((r['cell'], r['seed']) for records in log.values() for r in records)
  assert trained == sorted(JOBS)
  cores = [{tuple(r['cores']) for r in records} for records in log.values()]
  assert all(len(c) == 1 and len(next(iter(c))) == 1 for c in cores)  # one core each
  assert cores[0] != cores[1]  # disjoint
  for records in log.values():
    assert all('--xla_cpu_multi_thread_eigen=false' in r['xla_flags'] for r in records)
    assert all(r['platforms'] == 'cpu' for r in records)


@two_cores
def test_a_killed_worker_stops_the_pool_and_a_rerun_trains_only_the_rest(tmp_path):
  path = str(tmp_path / 'gt_runs.csv')
  with pytest.raises(RuntimeError, match=r'worker \d \(cores \[\d\]\) died with exit code 7'):
    _pool(tmp_path, fail_on=('c4', 0))
  kept = RunsFile(path).read()
  assert ('c4', 0, 16) not in kept
  assert all(acc == helpers.fake_gt_accuracy(c, s) for (c, s, _), acc in kept.items())
  first = set(os.listdir(tmp_path / 'log'))
  for name in first:  # the rerun's workers wait for their own start
    if name.startswith('started_'):
      os.remove(tmp_path / 'log' / name)
  todo = [job for job in JOBS if (*job, 16) not in kept]
  out, _ = _pool(tmp_path, jobs=todo)
  assert sorted(out) == sorted(todo)
  log = helpers.fake_gt_log(tmp_path / 'log')
  rerun = [
    (r['cell'], r['seed']) for pid, rs in log.items() if f'{pid}.jsonl' not in first for r in rs
  ]
  assert sorted(rerun) == sorted(todo)  # nothing kept is trained again
  assert set(RunsFile(path).read()) == {(*job, 16) for job in JOBS}


def test_a_failing_trainer_names_its_worker_and_the_error(tmp_path):
  with pytest.raises(RuntimeError, match=r"worker 0 failed(.|\n)*no such cell 'c1'"):
    _pool(tmp_path, workers=1, error_on=('c1', 1))
  assert ('c0', 0, 16) in RunsFile(str(tmp_path / 'gt_runs.csv')).read()


def test_core_slices_are_disjoint_and_near_equal():
  assert cpu_workers.core_slices(list(range(8)), 3) == [[0, 1, 2], [3, 4, 5], [6, 7]]
  assert cpu_workers.core_slices([4, 9], 2) == [[4], [9]]
  assert cpu_workers.core_slices([4, 9], 1) == [[4, 9]]
  for bad in (0, 3):
    with pytest.raises(ValueError, match=rf'workers={bad}: expected 1..2 \(the cores'):
      cpu_workers.core_slices([4, 9], bad)


def test_runs_file_cuts_a_torn_line_before_appending(tmp_path):
  runs = RunsFile(str(tmp_path / 'gt_runs.csv'))
  runs.start()
  runs.append([('a', 0, 4, 81.23456)])
  with open(runs.path, 'a') as f:
    f.write('b,1,4,7')  # a writer killed mid-line
  runs.append([('c', 1, 4, 80.5)])
  assert (tmp_path / 'gt_runs.csv').read_text().splitlines() == [
    'arch,seed,epochs,accuracy',
    'a,0,4,81.2346',
    'c,1,4,80.5000',
  ]
  assert runs.read() == {('a', 0, 4): 81.2346, ('c', 1, 4): 80.5}
  (tmp_path / 'torn.csv').write_text('arch,se')  # killed while writing the header
  torn = RunsFile(str(tmp_path / 'torn.csv'))
  torn.start()
  assert (tmp_path / 'torn.csv').read_text() == 'arch,seed,epochs,accuracy\n'


def _append_many(path, tag, n):
  runs = RunsFile(path)
  for i in range(n):
    runs.append([(f'{tag}{i}', 0, 4, 70 + i / 1000)])


def test_concurrent_appends_stay_whole_rows(tmp_path):
  path = str(tmp_path / 'gt_runs.csv')
  RunsFile(path).start()
  context = multiprocessing.get_context('spawn')
  procs = [context.Process(target=_append_many, args=(path, tag, 150)) for tag in 'xyz']
  for p in procs:
    p.start()
  for p in procs:
    p.join()
  assert [p.exitcode for p in procs] == [0, 0, 0]
  assert len(RunsFile(path).read()) == 450
  assert len((tmp_path / 'gt_runs.csv').read_text().splitlines()) == 451

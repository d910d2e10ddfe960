"""Ground-truth runs in worker processes (`close_jax.benchmarks.gt_workers`) and the runs file they
share (`gt_runs.RunsFile`): each run trained once, in a pinned single-threaded CPU process; a worker
that dies or fails stops the pool with the finished runs kept, and a rerun trains only the rest."""

import fcntl
import functools
import multiprocessing
import os
import time

import helpers
import jaxlib.version
import pytest

from close_jax import cpu_workers, xla_flags
from close_jax.benchmarks import gt_workers, nb201_gt_trainer
from close_jax.benchmarks.gt_runs import RunsFile

JOBS = [(f'c{i}', s) for i in range(6) for s in (0, 1)]
two_cores = pytest.mark.skipif(len(cpu_workers.usable_cores()) < 2, reason='needs two usable cores')


def _pool(tmp_path, workers=2, jobs=JOBS, **fake):
  (tmp_path / 'log').mkdir(exist_ok=True)
  seen = []
  protocol = nb201_gt_trainer.Protocol()  # unpickled in the worker: imports JAX code
  out = gt_workers.train_parallel(
    functools.partial(
      helpers.fake_gt_train,
      str(tmp_path / 'log'),
      workers=min(workers, len(jobs)),
      protocol=protocol,
      **fake,
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
  cores = [{tuple(r['thread_cores']) for r in records} for records in log.values()]
  assert all(len(c) == 1 and len(next(iter(c))) == 1 for c in cores)  # every thread: one core
  assert cores[0] != cores[1]  # disjoint
  single = jaxlib.version.__version__.startswith(xla_flags.MEASURED_JAXLIB)
  for records in log.values():
    assert all(r['platform'] == 'cpu' for r in records)
    if single:  # the flag exists (and is added) on the jaxlib versions close_jax measured
      assert all('--xla_cpu_multi_thread_eigen=false' in r['xla_flags'] for r in records)
  assert 'xla_cpu_multi_thread_eigen' not in os.environ.get('XLA_FLAGS', '')  # ours unchanged


@two_cores
def test_a_killed_worker_stops_the_pool_and_a_rerun_trains_only_the_rest(tmp_path):
  path = str(tmp_path / 'gt_runs.csv')
  died = r"\(cores \[\d\]\) died with exit code 7 while running \('c4', 0\)"
  with pytest.raises(RuntimeError, match=died):
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
  with pytest.raises(RuntimeError, match=r"worker 0 failed on \('c1', 1\)(.|\n)*no such cell 'c1'"):
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


def _append_one(path):
  RunsFile(path).append([('late', 0, 4, 70.0)])


def test_an_append_waits_for_the_lock_and_cuts_a_tail_torn_meanwhile(tmp_path):
  path = str(tmp_path / 'gt_runs.csv')
  RunsFile(path).start()
  appender = multiprocessing.get_context('spawn').Process(target=_append_one, args=(path,))
  with open(path, 'ab') as f:
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # a writer holding the lock...
    appender.start()
    time.sleep(3)  # ...longer than the appender takes to start and try
    assert RunsFile(path).read() == {}
    f.write(b'torn,1,4,6')  # ...and killed mid-line
    f.flush()
    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
  appender.join(60)
  assert appender.exitcode == 0
  assert (tmp_path / 'gt_runs.csv').read_text() == 'arch,seed,epochs,accuracy\nlate,0,4,70.0000\n'


def test_reading_skips_a_torn_last_line(tmp_path):
  (tmp_path / 'r.csv').write_text('arch,seed,epochs,accuracy\na,0,4,81.5\nb,1,4,6')
  assert RunsFile(str(tmp_path / 'r.csv')).read() == {('a', 0, 4): 81.5}  # not b at 6.0


def test_duplicate_jobs_fail_before_any_work(tmp_path):
  with pytest.raises(ValueError, match=r"job \('c0', 0\) is listed twice"):
    cpu_workers.map_unordered(lambda: None, [('c0', 0), ('c1', 0), ('c0', 0)], 1)

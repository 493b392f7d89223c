"""Runs whose process died are marked failed, so they never block automation or the run queue.

`ftassets run` (and `sweep`, `freeze-test-set`) execute in their own process: after a `kill -9` or an
out-of-memory kill nothing is left to report the end, and Dagster would show the run STARTED forever
(its assets "in progress": automation waits on them, and they count against the queue's
`max_concurrent_runs`). Each such run carries its process's identity as tags (host, pid, start
time); the next `ftassets` command and the `dead_runs_sensor` (every minute, in the daemon) mark a
run of this host failed when that process is gone or the pid now belongs to another process. Runs
the daemon or the UI launch are watched by Dagster's code server, which reports a dead run worker
itself."""

import socket

import dagster as dg
import psutil

HOST, PID, STARTED = "ftassets/host", "ftassets/pid", "ftassets/pid_started"
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def process_tags() -> dict[str, str]:
    """This process's identity, as run tags (no user data: host name, pid, start time)."""
    me = psutil.Process()
    return {HOST: socket.gethostname(), PID: str(me.pid), STARTED: f"{me.create_time():.3f}"}


def _alive(tags: dict[str, str]) -> bool:
    try:
        process = psutil.Process(int(tags[PID]))
        same = abs(process.create_time() - float(tags[STARTED])) < 0.01  # not a reused pid
        return same and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError):
        return False


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every in-progress run of this host whose process is gone; returns their run ids."""
    records = instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS, tags={HOST: socket.gethostname()}))
    failed = []
    for record in records:
        run = record.dagster_run
        if PID in run.tags and not _alive(run.tags):
            instance.report_engine_event(
                f"the process that ran this run (pid {run.tags[PID]} on {run.tags[HOST]}) is gone: killed, out of "
                f"memory, or the machine restarted; marked failed so automation and the run queue go on", run)
            instance.report_run_failed(run)
            failed.append(run.run_id)
    return failed


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Marks failed the runs of `ftassets` commands whose process died (kill -9, out of memory), "
                       "so their assets are not 'in progress' forever and the run queue is not held.")
def dead_runs_sensor(context: dg.SensorEvaluationContext):
    failed = fail_dead_runs(context.instance)
    return dg.SkipReason(f"marked failed: {', '.join(failed)}" if failed else "no dead runs")

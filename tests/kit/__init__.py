"""What the tests share, in one place (no test module imports another):

- `servers`: real HTTP on 127.0.0.1 (`serve_app`), the apps tests serve, and the session
  fixtures `demo_server` / `slow_server` (offered to every test by tests/conftest.py);
- `fakeapi`: a mutable fake orders API whose rows tests change between runs;
- `jobs`: `write_job`, a job file where the ConfigManager and `tg --configs` read it;
- `stepclock`: a clock that advances one second per reading (store tests);
- `stepped`: the real Scheduler and DuckStore in one process on a stepped clock, with engines
  that end each run a set number of steps later (what fires when, without Ray or sleep);
- `ray`: a full runtime on the shared local Ray for one test, and waits on its runs, on a
  paused job's runs all ended, on a restarted actor (conditions, never windows of time);
- `faults`: a paged source that counts requests, exact-row totals, worker pids (fault tests);
- `cli`: the `tg` command in subprocesses, bounded polling, process checks;
- `harness`: `tg up` started, talked to and stopped (e2e and cluster tests);
- `cluster`: a multi-node Ray on this machine (tests/cluster).
"""

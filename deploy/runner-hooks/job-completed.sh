#!/bin/sh
# The runner's job-completed hook (ACTIONS_RUNNER_HOOK_JOB_COMPLETED in the runner's .env):
# the job's report is written to /var/lib/observer/jobs and its summary appended to the job's
# summary page. Add e.g. `--fail-on blocked` to fail jobs that could not reach a documented host.
exec_observer=${OBSERVER:-/usr/local/bin/observer}
"$exec_observer" job completed --socket /run/observer/observer.sock "$@"

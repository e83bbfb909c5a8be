#!/bin/sh
# The runner's job-started hook (ACTIONS_RUNNER_HOOK_JOB_STARTED in the runner's .env):
# observer daemon follows this job's processes from now on. With --require, the job fails
# before it runs when a group it needs is blocked now (exit 20).
exec_observer=${OBSERVER:-/usr/local/bin/observer}
"$exec_observer" job started --socket /run/observer/observer.sock "$@"

"""Deploy the relay to veFaaS with the official Python SDK: `python -m deploy`.

Finds the web-server function (started by run.sh), else creates it, else updates what differs;
uploads the package, installs requirements.txt and releases only when the code changed; proves the
dead-letter store works before it releases; routes a named API gateway to it, and in Cloud Monitor
makes its callback URL and ticks it in the rules named; prints the callback URL. Settings in this shell
(config.VARIABLES, and the store's credentials) become the function's environment; settings the
function already has and this shell lacks are kept. `--dry-run` prints the plan and calls nothing.
Each step says what it found and what it changed, and never prints a secret.

One module per service it talks to: `function` (veFaaS: the function and its timers), `gateway` (the
API gateway route), `monitor` (Cloud Monitor's callback URL and the rules that call it); `package` (what
ships), `wiring_test` (`python -m deploy test`), `calls` (calling Volcengine, and saying what happened),
`cli` (the command line, and the order of the steps).
"""

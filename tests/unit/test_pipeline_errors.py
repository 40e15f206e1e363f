"""Invalid pipeline files: each gets its exact `file:line:column: path: message` errors.

Also the YAML limits: an alias bomb and a 2 MiB file are rejected before
any tree is built, and text whoever pushes controls cannot be spliced into
a `run:` script.
"""

from __future__ import annotations

import pytest

from minijenkin.errors import PipelineError
from minijenkin.pipeline.events import Event
from minijenkin.pipeline.parser import PipelineValidationError, parse_pipeline, parse_source
from minijenkin.pipeline.plan import build_graph

FILE = ".minijenkin.yml"

INVALID_FILES = [
    pytest.param(
        'jobz:\n  a:\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:1:1: unknown key 'jobz'; did you mean 'jobs'?",
        ],
        id='unknown-top'),
    pytest.param(
        'jobs:\n  a:\n    stpes:\n      - runn: make\n',
        [
            ".minijenkin.yml:3:5: jobs.a: unknown key 'stpes'; did you mean 'steps'?",
        ],
        id='steps-typo-alone'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - runn: make\n',
        [
            ".minijenkin.yml:4:9: jobs.a.steps[0]: unknown key 'runn'; did you mean 'run'?",
        ],
        id='run-typo-alone'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - nmae: make\n',
        [
            ".minijenkin.yml:4:9: jobs.a.steps[0]: unknown key 'nmae'; did you mean 'name'?",
            ".minijenkin.yml:4:9: jobs.a.steps[0]: missing required key 'run'",
        ],
        id='run-missing-other-typo'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - run: x\n   b: 1\n',
        [
            ".minijenkin.yml:5:4: invalid YAML: this line's indentation does not match the lines "
            "above it (expected <block end>, but found '<block mapping start>')",
        ],
        id='indentation'),
    pytest.param(
        'jobs:\n  a: b: c\n',
        [
            ".minijenkin.yml:2:7: invalid YAML: unexpected ':'; quote a value that contains ': ', "
            "or check the indentation (mapping values are not allowed here)",
        ],
        id='colon-in-value'),
    pytest.param(
        'jobs:\n  build:\n    need: [lint]\n    steps:\n      - run: make\n',
        [
            ".minijenkin.yml:3:5: jobs.build: unknown key 'need'; did you mean 'needs'?",
        ],
        id='need-typo'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - run: make\n        nmae: x\n',
        [
            ".minijenkin.yml:5:9: jobs.a.steps[0]: unknown key 'nmae'; did you mean 'name'?",
        ],
        id='unknown-step-key'),
    pytest.param(
        'name: x\n',
        [
            ".minijenkin.yml:1:1: missing required key 'jobs'",
        ],
        id='no-jobs'),
    pytest.param(
        'jobs: [a, b]\n',
        [
            ".minijenkin.yml:1:7: 'jobs' must be a mapping of job ids to jobs",
        ],
        id='jobs-list'),
    pytest.param(
        'jobs:\n  1build:\n    steps: [{run: make}]\n',
        [
            ".minijenkin.yml:2:3: jobs.1build: invalid job id: start with a letter or '_', then "
            "letters, digits, '-' or '_'",
        ],
        id='bad-job-id'),
    pytest.param(
        'jobs:\n  a:\n    name: A\n',
        [
            ".minijenkin.yml:3:5: jobs.a: missing required key 'steps'",
        ],
        id='no-steps'),
    pytest.param(
        'jobs:\n  a:\n    steps: []\n',
        [
            ".minijenkin.yml:3:12: jobs.a: 'steps' must be a non-empty list",
        ],
        id='empty-steps'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - make\n',
        [
            ".minijenkin.yml:4:9: jobs.a.steps[0]: each step must be a mapping with a 'run' key",
        ],
        id='step-not-map'),
    pytest.param(
        "jobs:\n  a:\n    steps:\n      - run: ''\n",
        [
            ".minijenkin.yml:4:14: jobs.a.steps[0]: 'run' must be a non-empty string",
        ],
        id='empty-run'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - run: make\n        uses: actions/checkout@v4\n',
        [
            ".minijenkin.yml:5:9: jobs.a.steps[0]: a step has either 'run' or 'uses', not both",
        ],
        id='run-and-uses'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - uses: actions/checkout@v4\n      - uses: '
        'actions/setup-node@v4\n',
        [
            ".minijenkin.yml:5:15: jobs.a.steps[1]: the action 'actions/setup-node@v4' cannot run "
            "here: Mini-Jenkin runs 'run:' steps only, and treats actions/checkout as already "
            "done; replace this step with a 'run:' step that does the same",
        ],
        id='other-action'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - uses: actions/checkout@v4\n        with:\n          '
        'path: src\n',
        [
            ".minijenkin.yml:6:11: jobs.a.steps[0].with: actions/checkout input 'path' is not "
            "supported: the workspace is always a full clone of the run's commit at "
            '$GITHUB_WORKSPACE',
        ],
        id='checkout-with'),
    pytest.param(
        'jobs:\n  a:\n    needs: [buld]\n    steps: [{run: x}]\n  build:\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:3:12: jobs.a: 'needs' names unknown job 'buld'; did you mean 'build'?",
        ],
        id='unknown-need'),
    pytest.param(
        'jobs:\n  a:\n    needs: a\n    steps: [{run: x}]\n',
        [
            '.minijenkin.yml:3:12: jobs.a: a job cannot need itself',
        ],
        id='self-need'),
    pytest.param(
        'jobs:\n  a:\n    needs: b\n    steps: [{run: x}]\n  b:\n    needs: a\n    steps: [{run: '
        'x}]\n',
        [
            ".minijenkin.yml:3:12: jobs.a: 'needs' forms a cycle: a -> b -> a",
        ],
        id='cycle'),
    pytest.param(
        'jobs:\n  a:\n    timeout-minutes: 0\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:3:22: jobs.a: 'timeout-minutes' must be a number above 0 and at most "
            '10080',
        ],
        id='timeout'),
    pytest.param(
        'env:\n  1X: y\njobs:\n  a:\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:2:3: env: invalid environment variable name '1X': use letters, digits "
            "and '_'",
        ],
        id='env-name'),
    pytest.param(
        'jobs:\n  a:\n    env:\n      X: [1]\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:4:10: jobs.a.env: the value of 'X' must be a string, number or boolean",
        ],
        id='env-value'),
    pytest.param(
        'on: pushh\njobs:\n  a:\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:1:5: on: unknown event 'pushh'; did you mean 'push'?",
        ],
        id='unknown-event'),
    pytest.param(
        'on: [push, release]\njobs:\n  a:\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:1:12: on: event 'release' is not supported; Mini-Jenkin starts runs "
            'for: push, pull_request, schedule, workflow_dispatch',
        ],
        id='unsupported-event'),
    pytest.param(
        'on:\n  push:\n    branch: [main]\njobs:\n  a:\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:3:5: on.push: unknown key 'branch'; did you mean 'branches'?",
        ],
        id='push-key'),
    pytest.param(
        'on:\n  push:\n    branches: [main]\n    branches-ignore: [dev]\njobs:\n  a:\n    steps: '
        '[{run: x}]\n',
        [
            ".minijenkin.yml:4:5: on.push: use either 'branches' or 'branches-ignore', not both "
            "(negate with '!' in 'branches')",
        ],
        id='both-branches'),
    pytest.param(
        "on:\n  push:\n    branches: ['release/[']\njobs:\n  a:\n    steps: [{run: x}]\n",
        [
            ".minijenkin.yml:3:16: on.push: branches: pattern 'release/[' has a '[' without a "
            "closing ']'",
        ],
        id='bad-glob'),
    pytest.param(
        "on:\n  push:\n    paths: ['!docs/**']\njobs:\n  a:\n    steps: [{run: x}]\n",
        [
            ".minijenkin.yml:3:12: on.push: 'paths' has only negated ('!') patterns, so it selects "
            'nothing; add a positive pattern first',
        ],
        id='only-negated'),
    pytest.param(
        "on:\n  schedule:\n    - cron: '61 * * * *'\njobs:\n  a:\n    steps: [{run: x}]\n",
        [
            ".minijenkin.yml:3:13: on.schedule[0]: invalid cron expression '61 * * * *': expected "
            "five fields (minute hour day-of-month month day-of-week), e.g. '30 5 * * 1-5'",
        ],
        id='bad-cron'),
    pytest.param(
        "on:\n  schedule:\n    - cron: '0 3 * * *'\n      timezone: Mars/Base\njobs:\n  a:\n    "
        'steps: [{run: x}]\n',
        [
            ".minijenkin.yml:4:17: on.schedule[0]: unknown time zone 'Mars/Base'; use an IANA name "
            "such as 'Europe/Paris'",
        ],
        id='bad-tz'),
    pytest.param(
        'on:\n  workflow_dispatch:\n    inputs:\n      level:\n        type: int\njobs:\n  a:\n    '
        'steps: [{run: x}]\n',
        [
            ".minijenkin.yml:5:15: on.workflow_dispatch.inputs.level: invalid input type 'int'; "
            'expected one of: string, boolean, number, choice, environment',
        ],
        id='input-type'),
    pytest.param(
        'on:\n  workflow_dispatch:\n    inputs:\n      env:\n        type: choice\n        '
        'options: [a, b]\n        default: c\njobs:\n  a:\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:7:18: on.workflow_dispatch.inputs.env: invalid default: 'c' is not "
            'one of the options: a, b',
        ],
        id='choice-default'),
    pytest.param(
        'on:\n  pull_request:\n    types: [opend]\njobs:\n  a:\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:3:13: on.pull_request: unknown pull request type 'opend'; did you "
            "mean 'opened'?",
        ],
        id='pr-type'),
    pytest.param(
        'jobs:\n  a:\n    strategy:\n      matrix:\n        py: []\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:5:13: jobs.a.strategy.matrix: matrix key 'py' must be a non-empty "
            'list of values',
        ],
        id='matrix-empty-axis'),
    pytest.param(
        'jobs:\n  a:\n    strategy:\n      matrix:\n        py: [1]\n        exclude:\n          - '
        'os: linux\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:7:13: jobs.a.strategy.matrix: exclude entry uses 'os', which is not a "
            'matrix key; matrix keys: py',
        ],
        id='matrix-bad-exclude'),
    pytest.param(
        'jobs:\n  a:\n    strategy:\n      matrix:\n        x: '
        '[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]\n        y: '
        '[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]\n    steps: [{run: x}]\n',
        [
            '.minijenkin.yml:5:9: jobs.a.strategy: the matrix has 289 combinations; the limit is '
            '256',
        ],
        id='matrix-too-big'),
    pytest.param(
        'jobs:\n  a:\n    strategy:\n      max-parallel: 0\n      matrix:\n        x: [1]\n    '
        'steps: [{run: x}]\n',
        [
            ".minijenkin.yml:4:21: jobs.a.strategy: 'max-parallel' must be a whole number of at "
            'least 1',
        ],
        id='max-parallel'),
    pytest.param(
        "jobs:\n  a:\n    strategy:\n      fail-fast: 'no'\n      matrix:\n        x: [1]\n    "
        'steps: [{run: x}]\n',
        [
            ".minijenkin.yml:4:18: jobs.a.strategy: 'fail-fast' must be true or false",
        ],
        id='fail-fast'),
    pytest.param(
        'jobs:\n  a:\n    strategy:\n      matrix:\n        python: [3]\n    steps:\n      - run: '
        'echo ${{ matrix.pyhton }}\n',
        [
            ".minijenkin.yml:7:23: jobs.a.steps[0].run: the matrix has no key 'pyhton'; did you "
            "mean 'python'?",
        ],
        id='matrix-unknown-key'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - run: echo ${{ matrix.os }}\n',
        [
            '.minijenkin.yml:4:23: jobs.a.steps[0].run: matrix.os is used, but the job has no '
            'strategy.matrix',
        ],
        id='matrix-no-strategy'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - run: echo ${{ github.sha == }}\n',
        [
            '.minijenkin.yml:4:37: jobs.a.steps[0].run: invalid expression: expected a value, '
            'found the end of the expression',
        ],
        id='expr-syntax'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - name: "Build ${{ github.sha"\n        run: make\n',
        [
            ".minijenkin.yml:4:22: jobs.a.steps[0].name: invalid expression: '${{' is not closed "
            "by '}}'",
        ],
        id='expr-unclosed'),
    pytest.param(
        "jobs:\n  a:\n    if: gihtub.ref == 'refs/heads/main'\n    steps: [{run: x}]\n",
        [
            ".minijenkin.yml:3:9: jobs.a.if: unknown context 'gihtub'; did you mean 'github'?",
        ],
        id='unknown-context'),
    pytest.param(
        "jobs:\n  a:\n    if: >-\n      github.event_name == 'push' ||\n      gihtub.ref == 'x'\n"
        "    steps: [{run: x}]\n  b:\n    if: github.ref == 'a' ||\n      gihtub.ref == 'b'\n"
        "    steps: [{run: x}]\n  c:\n    if: \"github.ref == 'a' ||\n      gihtub.ref == 'b'\"\n"
        "    steps: [{run: x}]\n",
        [
            ".minijenkin.yml:5:7: jobs.a.if: unknown context 'gihtub'; did you mean 'github'?",
            ".minijenkin.yml:9:7: jobs.b.if: unknown context 'gihtub'; did you mean 'github'?",
            ".minijenkin.yml:13:7: jobs.c.if: unknown context 'gihtub'; did you mean 'github'?",
        ],
        id='if-over-several-lines'),
    pytest.param(
        "jobs:\n  a:\n    steps:\n      - uses: actions/checkout@v4\n        with: {submodules: deep}\n",
        [
            ".minijenkin.yml:5:28: jobs.a.steps[0].with: actions/checkout input 'submodules' must be "
            "true, false or recursive, got 'deep'",
        ],
        id='checkout-submodules-value'),
    pytest.param(
        "jobs:\n  a:\n    steps:\n      - uses: actions/checkout@v4\n        with:\n"
        "          submodules: [a]\n          lfs: 1\n",
        [
            ".minijenkin.yml:6:23: jobs.a.steps[0].with: actions/checkout input 'submodules' must be "
            "true, false or recursive, got ['a']",
            ".minijenkin.yml:7:16: jobs.a.steps[0].with: actions/checkout input 'lfs' must be "
            "true or false, got 1",
        ],
        id='checkout-inputs-of-other-types'),
    pytest.param(
        "on:\n  push:\n    branches: [master, 3.10]\n    tags: 2\njobs:\n  a:\n    steps: [{run: x}]\n",
        [
            ".minijenkin.yml:3:24: on.push: 'branches' item 3.1 is not a string; quote it (for example "
            "'3.10') so YAML keeps it as written",
            ".minijenkin.yml:4:11: on.push: 'tags' value 2 is not a string; quote it (for example "
            "'3.10') so YAML keeps it as written",
        ],
        id='branch-read-as-number'),
    pytest.param(
        "jobs:\n  a:\n    if: secrets.TOKEN != ''\n    steps: [{run: x}]\n",
        [
            ".minijenkin.yml:3:9: jobs.a.if: the 'secrets' context is not available here; "
            'available: github, minijenkin, inputs, vars, matrix, strategy, needs',
        ],
        id='context-not-here'),
    pytest.param(
        "jobs:\n  b:\n    steps: [{run: x}]\n  a:\n    if: needs.b.result == 'success'\n    steps: "
        '[{run: x}]\n',
        [
            '.minijenkin.yml:5:9: jobs.a.if: needs.b refers to a job this job does not list in '
            "'needs' (it needs: none)",
        ],
        id='needs-not-listed'),
    pytest.param(
        "jobs:\n  b:\n    steps: [{run: x}]\n  a:\n    needs: b\n    if: needs.b.status == 'x'\n"
        '    steps: [{run: x}]\n',
        [
            '.minijenkin.yml:6:9: jobs.a.if: needs.b.status is not available; use needs.b.result or '
            'needs.b.outputs.<name>',
        ],
        id='needs-unknown-key'),
    pytest.param(
        "jobs:\n  b:\n    outputs: [v]\n    steps: [{run: x}]\n",
        [".minijenkin.yml:3:14: jobs.b: 'outputs' must be a mapping of output names to values"],
        id='outputs-not-mapping'),
    pytest.param(
        "jobs:\n  b:\n    outputs:\n      2v: x\n      w: {a: 1}\n      u: ${{ steps.nope.outputs.x }}\n"
        "    steps: [{run: x}]\n",
        [
            ".minijenkin.yml:4:7: jobs.b.outputs: invalid output name '2v': start with a letter or '_', "
            "then letters, digits, '-' or '_'",
            ".minijenkin.yml:5:10: jobs.b.outputs: output 'w' must be a string",
            ".minijenkin.yml:6:14: jobs.b.outputs.u: steps.nope refers to no earlier step with that 'id' "
            "(earlier ids: none)",
        ],
        id='outputs-invalid'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - run: echo ${{ success() }}\n',
        [
            ".minijenkin.yml:4:23: jobs.a.steps[0].run: success() can only be used in 'if' "
            'conditions',
        ],
        id='status-outside-if'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - run: x\n        if: ${{ github.ref }} == '
        "'refs/heads/main'\n",
        [
            ".minijenkin.yml:5:13: jobs.a.steps[0].if: invalid condition: mixing text and '${{ }}' "
            'in a condition makes it a non-empty string, which is always true; write the whole '
            "condition inside one '${{ }}', or without it",
        ],
        id='mixed-if'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - run: |\n          echo building\n          echo ${{ '
        'github.ref_name }}\n',
        [
            ".minijenkin.yml:6:20: jobs.a.steps[0].run: '${{ github.ref_name }}' in a script would "
            'splice in a branch or tag name, which whoever pushes chooses, and such text can run '
            'commands; use the environment variable "$GITHUB_REF_NAME" in the script instead',
        ],
        id='injection-ref'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - run: echo "${{ github.event.head_commit.message }}"\n',
        [
            ".minijenkin.yml:4:24: jobs.a.steps[0].run: '${{ github.event.head_commit.message }}' "
            'in a script would splice in a commit message, which whoever pushes writes, and such '
            'text can run commands; use the environment variable "$MINIJENKIN_COMMIT_MESSAGE" in '
            'the script instead',
        ],
        id='injection-message'),
    pytest.param(
        "jobs:\n  a:\n    steps:\n      - run: echo '${{ github.event.pull_request.title }}'\n",
        [
            ".minijenkin.yml:4:24: jobs.a.steps[0].run: '${{ github.event.pull_request.title }}' "
            'in a script would splice in a pull request title, and such text can run commands; use '
            'the environment variable "$MINIJENKIN_PULL_REQUEST_TITLE" in the script instead',
        ],
        id='injection-title'),
    pytest.param(
        'jobs:\n  a:\n    env:\n      BRANCH: ${{ github.head_ref }}\n    steps:\n      - run: '
        'echo ${{ env.BRANCH }}\n',
        [
            ".minijenkin.yml:6:23: jobs.a.steps[0].run: '${{ env.BRANCH }}' in a script would "
            'splice in environment variable BRANCH, whose value comes from event text, and such '
            'text can run commands; use the environment variable "$BRANCH" in the script instead',
        ],
        id='injection-env'),
    pytest.param(
        'on:\n  workflow_dispatch:\n    inputs:\n      note: {type: string}\njobs:\n  a:\n    '
        'steps:\n      - run: echo ${{ inputs.note }}\n',
        [
            ".minijenkin.yml:8:23: jobs.a.steps[0].run: '${{ inputs.note }}' in a script would "
            "splice in a manual run's free-text input, and such text can run commands; set it in "
            'the step\'s \'env\' (for example VALUE: ${{ inputs.note }}) and use "$VALUE" in the '
            'script instead',
        ],
        id='injection-input'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - id: x\n        run: a\n      - id: x\n        run: b\n',
        [
            ".minijenkin.yml:6:13: jobs.a.steps[1]: duplicate step id 'x': ids must be unique "
            'within a job',
        ],
        id='step-id-dup'),
    pytest.param(
        "jobs:\n  a:\n    steps:\n      - run: a\n        if: steps.later.outcome == 'success'\n   "
        '   - id: later\n        run: b\n',
        [
            '.minijenkin.yml:5:13: jobs.a.steps[0].if: steps.later refers to no earlier step with '
            "that 'id' (earlier ids: none)",
        ],
        id='steps-unknown'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - run: a\n        shell: cmd\n',
        [
            ".minijenkin.yml:5:16: jobs.a.steps[0]: shell 'cmd' exists only on Windows runners; use "
            'bash, sh, python, pwsh or a command with {0}',
        ],
        id='shell-windows'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - run: a\n        shell: bash -l\n',
        [
            ".minijenkin.yml:5:16: jobs.a.steps[0]: shell 'bash -l' is neither a keyword (bash, sh, "
            "python, pwsh) nor a command with {0} where the script's path goes, such as 'bash -el {0}'",
        ],
        id='shell-no-placeholder'),
    pytest.param(
        'jobs:\n  a:\n    defaults:\n      run:\n        shell: ${{ matrix.shell }}\n    steps:\n'
        '      - run: a\n',
        [".minijenkin.yml:5:16: jobs.a.defaults.run: 'shell' cannot contain expressions"],
        id='shell-expression'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - run: a\n        working-directory: ../outside\n',
        [
            ".minijenkin.yml:5:28: jobs.a.steps[0]: 'working-directory' '../outside' must be a "
            'path inside the workspace, relative to it',
        ],
        id='workdir'),
    pytest.param(
        'jobs:\n  a:\n    continue-on-error: sometimes\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:3:24: jobs.a: 'continue-on-error' must be true, false or a '${{ }}' "
            'expression',
        ],
        id='coe'),
    pytest.param(
        'jobs:\n  a:\n    services:\n      db: {image: postgres}\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:3:5: jobs.a: 'services' is not supported: service containers need a "
            'container engine; start what the job needs in a step',
        ],
        id='services'),
    pytest.param(
        'jobs:\n  a:\n    environment:\n      url: https://x\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:4:7: jobs.a.environment: missing required key 'name'",
        ],
        id='environment-map'),
    pytest.param(
        'jobs:\n  a:\n    concurrency:\n      group: deploy\n      cancel: true\n    steps: [{run: '
        'x}]\n',
        [
            ".minijenkin.yml:5:7: jobs.a.concurrency: unknown key 'cancel'; expected one of: "
            'group, cancel-in-progress, queue',
        ],
        id='concurrency-key'),
    pytest.param(
        'jobs:\n  a:\n    concurrency:\n      group: deploy\n      queue: newest\n    steps: [{run: '
        'x}]\n',
        [
            ".minijenkin.yml:5:14: jobs.a.concurrency.queue: invalid 'queue' value 'newest': use "
            "'all' (run every pending job in order) or 'latest' (run only the newest)",
        ],
        id='concurrency-queue'),
    pytest.param(
        'jobs:\n  a:\n    retry: 11\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:3:12: jobs.a: 'retry' must be a number from 0 to 10, or a mapping "
            "with 'max' and 'on'",
        ],
        id='retry'),
    pytest.param(
        'jobs:\n  a:\n    steps: [{run: x}]\n  a:\n    steps: [{run: y}]\n',
        [
            ".minijenkin.yml:4:3: duplicate key 'a': each key may appear once in a mapping",
        ],
        id='dup-key'),
    pytest.param(
        'jobs:\n  a:\n    steps: [{run: x}\n',
        [
            ".minijenkin.yml:4:1: invalid YAML: expected ',' or ']', but got '<stream end>'",
        ],
        id='bad-yaml'),
    pytest.param(
        'jobs:\n\ta: {}\n',
        [
            ".minijenkin.yml:2:1: invalid YAML: a tab character; indent with spaces "
            "(found character '\\t' that cannot start any token)",
        ],
        id='tab'),
    pytest.param(
        'jobs:\n  a:\n    runs-on: {group: big}\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:3:14: jobs.a: 'runs-on' must be a label or a list of labels (runner "
            'groups are not supported)',
        ],
        id='runs-on-map'),
    pytest.param(
        'jobs:\n  a:\n    steps:\n      - run: x\n        with: {a: 1}\n',
        [
            ".minijenkin.yml:5:9: jobs.a.steps[0]: 'with' only goes with 'uses'",
        ],
        id='with-without-uses'),
    pytest.param(
        'on:\n  workflow_dispatch:\n    inputs:\n      target: {}\njobs:\n  a:\n    if: '
        "inputs.taget == 'x'\n    steps: [{run: x}]\n",
        [
            ".minijenkin.yml:7:9: jobs.a.if: unknown input 'taget'; did you mean 'target'?",
        ],
        id='input-unknown'),
    pytest.param(
        'jobs:\n  a:\n    name: ${{ github.branch }}\n    steps: [{run: x}]\n',
        [
            ".minijenkin.yml:3:15: jobs.a.name: unknown github property 'branch'; expected one of: "
            'event_name, event, ref, ref_name, ref_type, sha, repository, repository_owner, '
            'run_id, run_number, run_attempt, actor, triggering_actor, head_ref, base_ref, job, '
            'workspace, workflow, server_url, token',
        ],
        id='github-unknown'),
    pytest.param(
        'jobs:\n  a:\n    steps: [{run: x}]\n---\nx: 1\n',
        [
            '.minijenkin.yml: the file holds more than one YAML document (---)',
        ],
        id='multi-doc'),
    pytest.param(
        '',
        [
            ".minijenkin.yml:1:1: the file is empty; it needs a 'jobs' key",
        ],
        id='empty'),
    pytest.param(
        '- a\n- b\n',
        [
            ".minijenkin.yml:1:1: the file must be a mapping with a 'jobs' key",
        ],
        id='list-doc'),
    pytest.param(
        "jobs:\n  a:\n    steps:\n      - run: echo ${{ env.FROM_SCRIPT }}\n",
        [
            ".minijenkin.yml:4:23: jobs.a.steps[0].run: '${{ env.FROM_SCRIPT }}' in a script would splice "
            "in environment variable FROM_SCRIPT, which this file does not set (a script may set it to "
            "anything), and such text can run commands; use the environment variable \"$FROM_SCRIPT\" in "
            "the script instead",
        ],
        id='injection-unset-env'),
    pytest.param(
        "jobs:\n  a:\n    steps:\n      - id: cache\n        uses: actions/cache@v4\n"
        "      - if: steps.cache.outputs.cache-hit != 'true'\n        run: make deps\n",
        [
            ".minijenkin.yml:5:15: jobs.a.steps[0]: the action 'actions/cache@v4' cannot run here: "
            "Mini-Jenkin runs 'run:' steps only, and treats actions/checkout as already done; replace this "
            "step with a 'run:' step that does the same",
        ],
        id='rejected-step-keeps-id'),
    pytest.param(
        "jobs:\n  a:\n    steps:\n      - id: build\n        run: ''\n"
        "      - id: build\n        run: make\n",
        [
            ".minijenkin.yml:5:14: jobs.a.steps[0]: 'run' must be a non-empty string",
            ".minijenkin.yml:6:13: jobs.a.steps[1]: duplicate step id 'build': ids must be unique within "
            "a job",
        ],
        id='rejected-step-id-duplicated'),
]


@pytest.mark.parametrize(("text", "expected"), INVALID_FILES)
def test_invalid_file_errors(text: str, expected: list[str]) -> None:
    result = parse_source(text, file=FILE)
    assert result.pipeline is None
    assert [str(error) for error in result.errors] == expected


def test_invalid_file_table_is_large() -> None:
    assert len(INVALID_FILES) >= 30


def test_parse_pipeline_raises_every_error() -> None:
    with pytest.raises(PipelineValidationError) as caught:
        parse_pipeline("jobs:\n  a:\n    need: x\n    steps:\n      - run: ''\n", file=FILE)
    assert str(caught.value) == (
        ".minijenkin.yml:3:5: jobs.a: unknown key 'need'; did you mean 'needs'?\n"
        ".minijenkin.yml:5:14: jobs.a.steps[0]: 'run' must be a non-empty string")
    assert (caught.value.line, caught.value.column) == (3, 5)


ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
jobs: {a: {steps: [{run: *i}]}}
"""


def test_alias_bomb_rejected_before_expansion() -> None:
    """The scan stops at the alias that crosses the node limit (line 6 of 10), long before
    the 9^9 expansion; bench/pipeline.py measures how long this takes."""
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(ALIAS_BOMB, file=FILE)
    assert str(caught.value) == (
        ".minijenkin.yml:6:11: the document expands to more than 100000 nodes (check its aliases)")


def test_many_aliases_rejected() -> None:
    text = "x: &x 1\nlist: [" + ", ".join(["*x"] * 101) + "]\njobs: {}\n"
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(text, file=FILE)
    assert str(caught.value) == (
        ".minijenkin.yml:2:408: the document uses more than 100 aliases (*name); expand them or simplify "
        "the file")


def test_two_mebibyte_file_rejected_before_parsing() -> None:
    data = b"jobs:\n  a:\n    steps:\n      - run: echo\n" + b"# padding\n" * (2 * 1024 * 1024 // 10)
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(data, file=FILE)
    assert str(caught.value) == (
        f".minijenkin.yml: the file is {len(data)} bytes; the limit is 1048576 bytes (1 MiB)")
    assert len(data) >= 2 * 1024 * 1024


def test_deep_nesting_rejected() -> None:
    text = "jobs: " + "[" * 40 + "]" * 40 + "\n"
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(text, file=FILE)
    assert str(caught.value) == ".minijenkin.yml:1:38: the document is nested deeper than 32 levels"


@pytest.mark.parametrize(("text", "position"), [
    ('jobs:\n  a:\n    steps:\n      - env:\n          X: "a\\0b"\n        run: echo\n', "5:14"),
    ('jobs:\n  a:\n    steps:\n      - run: "echo \\0"\n', "4:14"),
    ('jobs:\n  a:\n    steps:\n      - name: "\\x00"\n        run: echo\n', "4:15"),
])
def test_nul_character_rejected(text: str, position: str) -> None:
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(text, file=FILE)
    assert str(caught.value) == (
        f".minijenkin.yml:{position}: the value contains a NUL character (\\0), which pipeline values "
        "cannot hold")


def test_invalid_utf8_rejected() -> None:
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(b"jobs:\n  a: \xff\n", file=FILE)
    assert str(caught.value) == ".minijenkin.yml: the file is not valid UTF-8 (byte 11)"


@pytest.mark.parametrize("script", [
    "echo ${{ github.sha }} ${{ github.run_id }} ${{ github.event_name }} ${{ github.repository }}",
    "echo ${{ matrix.os }} ${{ secrets.TOKEN }} ${{ runner.os }} ${{ job.status }}",
    "echo ${{ minijenkin.commit }} ${{ inputs.level }} ${{ env.SAFE }} ${{ needs.build.result }}",
    "test ${{ github.ref == 'refs/heads/main' }} = true",
    "echo ${{ contains(github.event.head_commit.message, '[skip]') }}",
    "echo ${{ steps.first.outcome }}",
])
def test_trusted_values_allowed_in_scripts(script: str) -> None:
    text = f"""\
on:
  workflow_dispatch:
    inputs:
      level: {{type: number}}
env:
  SAFE: ${{{{ github.sha }}}}-fixed
jobs:
  build:
    steps: [{{run: make}}]
  test:
    needs: build
    strategy:
      matrix:
        os: [linux]
    steps:
      - id: first
        run: echo
      - run: {script!r}
"""
    assert parse_source(text, file=FILE).errors == ()


def many_jobs(count: int, matrix_size: int) -> str:
    """A file of `count` jobs, each with a matrix of `matrix_size` combinations when above 1."""
    matrix = f"    strategy: {{matrix: {{n: {list(range(matrix_size))}}}}}\n" if matrix_size > 1 else ""
    jobs = "".join(f"  job{index}:\n{matrix}    steps: [{{run: x}}]\n" for index in range(count))
    return f"on: push\njobs:\n{jobs}"


def test_job_limit_counts_matrix_combinations() -> None:
    result = parse_source(many_jobs(200, 2), file=".github/workflows/ci.yml", workflow=True)
    assert result.pipeline is None
    assert [str(error) for error in result.errors] == [
        ".github/workflows/ci.yml:3:3: the file has 400 jobs, matrix combinations included; the limit is 256",
    ]
    assert parse_source(many_jobs(128, 2), file=FILE).errors == ()


def test_job_limit_counts_plain_jobs() -> None:
    result = parse_source(many_jobs(257, 1), file=FILE)
    assert [str(error) for error in result.errors] == [
        ".minijenkin.yml:3:3: the file has 257 jobs, matrix combinations included; the limit is 256",
    ]



@pytest.mark.parametrize(("text", "expected"), [
    ("concurrency:\n  group: ${{ fromJSON('x') }}\njobs:\n  a:\n    steps:\n      - run: echo\n",
     ".minijenkin.yml:2:3: concurrency: fromJSON(): the argument is not valid JSON: Expecting value: "
     "line 1 column 1 (char 0)"),
    ("jobs:\n  a:\n    timeout-minutes: ${{ fromJSON('-') }}\n    steps:\n      - run: echo\n",
     ".minijenkin.yml:3:22: jobs.a.timeout-minutes: fromJSON(): the argument is not valid JSON: "
     "Expecting value: line 1 column 1 (char 0)"),
    ("jobs:\n  a:\n    environment: ${{ github.ref == 'x' && 'prod' || fromJSON('{') }}\n"
     "    steps:\n      - run: echo\n",
     ".minijenkin.yml:3:18: jobs.a.environment: fromJSON(): the argument is not valid JSON: "
     "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
])
def test_plan_errors_name_line_and_column(text: str, expected: str) -> None:
    pipeline = parse_pipeline(text, file=FILE)
    with pytest.raises(PipelineError) as caught:
        build_graph(pipeline, Event(kind="push", ref="refs/heads/main", commit="c" * 40, branch="main"))
    assert str(caught.value) == expected


def test_expression_matrix_reported_once() -> None:
    text = ("jobs:\n  a:\n    strategy:\n      matrix: ${{ fromJSON(inputs.m) }}\n"
            "    runs-on: ${{ matrix.os }}\n    steps:\n      - run: echo ${{ matrix.v }}\n")
    result = parse_source(text, file=FILE)
    assert [str(error) for error in result.errors] == [
        ".minijenkin.yml:4:15: jobs.a.strategy: a matrix computed by an expression (such as fromJSON of a "
        "job output) is not supported; list its keys and values in the file",
    ]

"""Sweeps: the training runs the notebooks need, trained as jobs through submitit, in one module per
section: :mod:`~reproduce.sweep.jobs` (which runs each notebook needs, a job's state),
:mod:`~reproduce.sweep.execute` (a job as it runs), :mod:`~reproduce.sweep.slurm` (SLURM settings),
:mod:`~reproduce.sweep.records` (``results/<scale>/sweep/jobs.json``), :mod:`~reproduce.sweep.submission`
(``python -m reproduce sweep``), :mod:`~reproduce.sweep.report` (``status``) and
:mod:`~reproduce.sweep.planning` (``plan``). Their public names are re-exported here.
"""

from reproduce.sweep import execute as _execute
from reproduce.sweep import jobs as _jobs
from reproduce.sweep import planning as _planning
from reproduce.sweep import records as _records
from reproduce.sweep import slurm as _slurm
from reproduce.sweep import report as _report
from reproduce.sweep import submission as _submission
from reproduce.sweep.execute import *  # noqa: F401,F403
from reproduce.sweep.jobs import *  # noqa: F401,F403
from reproduce.sweep.planning import *  # noqa: F401,F403
from reproduce.sweep.records import *  # noqa: F401,F403
from reproduce.sweep.slurm import *  # noqa: F401,F403
from reproduce.sweep.report import *  # noqa: F401,F403
from reproduce.sweep.submission import *  # noqa: F401,F403

__all__ = [*_jobs.__all__, *_execute.__all__, *_slurm.__all__, *_records.__all__, *_submission.__all__,
           *_report.__all__, *_planning.__all__]

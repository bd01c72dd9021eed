"""Flower's configuration file (``flower --conf=celery_config/flowerconfig.py``).

Flower executes this file and takes the names it knows as options. Basic auth comes from the
settings (FLOWER_BASIC_AUTH, else the password ``make run`` generated); without one Flower
does not start at all: its API can run tasks, so it never runs open or with a default login.
"""

from settings import load_settings

MIN_PASSWORD_LENGTH = 12  # refuses admin:admin and its kind; the generated one has 48 characters

_credential = load_settings().flower_basic_auth or ""
_user, _, _password = _credential.partition(":")
if not _user or len(_password) < MIN_PASSWORD_LENGTH:
    raise SystemExit(
        "flower: no usable credential (FLOWER_BASIC_AUTH=user:password, a password of at least"
        f" {MIN_PASSWORD_LENGTH} characters); `bash services/secrets.sh flower` generates one"
    )

basic_auth = [_credential]

# Flower keeps every task it saw in memory, about 5 KiB each (default 100000: ~0.5 GiB after
# six days of 5 s relay ticks). The last 2000 is about 10 MiB.
max_tasks = 2000

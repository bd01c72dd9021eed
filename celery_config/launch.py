"""``python -m celery_config.launch -A MODULE:APP worker|beat [options]``: one Celery
subcommand without the ``celery`` umbrella CLI.

``celery.bin.celery`` imports every subcommand (``amqp`` brings click_repl, prompt_toolkit and
pygments) and every installed ``celery.commands`` plugin (Flower: tornado, redis,
humanize, ...) into every worker and beat. The options are the ``celery`` command's own.
"""

from __future__ import annotations

import sys

import click


def main(argv: list[str] | None = None) -> None:
    """Run ``worker`` or ``beat`` of the app named by ``-A``, with the ``celery`` command's options."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] not in ("-A", "--app"):
        raise SystemExit("usage: python -m celery_config.launch -A MODULE:APP worker|beat [options]")
    target, command, rest = args[1], args[2], args[3:]
    from celery.app.utils import find_app
    from celery.bin.base import CLIContext

    if command == "worker":
        from celery.bin.worker import worker as cmd
    elif command == "beat":
        from celery.bin.beat import beat as cmd
    else:
        raise SystemExit(f"celery_config.launch: unsupported command {command!r}")
    app = find_app(target)
    cmd.params.extend(app.user_options.get(command, []))
    # A one-command stand-in for the ``celery`` group, whose context the command reads.
    group = click.Group("celery", commands={command: cmd})
    context = CLIContext(app=app, no_color=False, workdir=None, quiet=False)
    group.main(args=[command, *rest], prog_name="celery", obj=context)


if __name__ == "__main__":
    main()

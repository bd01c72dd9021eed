"""Read the local mail catcher's inbox (the Maildir ``services/mailcatcher.sh`` fills).

    python -m services.mail_catcher list            # one line a message, oldest first
    python -m services.mail_catcher show N          # message N of the list (or a Message-ID)
    python -m services.mail_catcher list --to ada@example.com

MAIL_DIR (default .data/mail) names the Maildir, as for the catcher. This is a development
tool: it prints addresses and codes, which is what a user reading their inbox wants.
"""

from __future__ import annotations

import argparse
import mailbox
from dataclasses import dataclass
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path


@dataclass(frozen=True)
class CaughtMail:
    key: str
    message: Message

    def header(self, name: str) -> str:
        # Long values arrive folded over lines: unfold them.
        return " ".join(str(self.message.get(name, "")).split())

    @property
    def to(self) -> str:
        return self.header("To")

    @property
    def subject(self) -> str:
        return self.header("Subject")

    @property
    def message_id(self) -> str:
        return self.header("Message-ID")

    def body(self) -> str:
        part = self.message.get_payload(decode=True)
        return part.decode("utf-8", "replace") if isinstance(part, bytes) else str(self.message.get_payload())


def caught_mail(mail_dir: Path) -> list[CaughtMail]:
    """Every message in the Maildir, oldest first (by Date, then by arrival)."""
    if not (mail_dir / "new").is_dir():
        return []
    box = mailbox.Maildir(mail_dir, create=False)
    found = []
    for key in box.keys():
        try:
            found.append(CaughtMail(key, box.get_message(key)))
        except (FileNotFoundError, KeyError):  # moved or removed while listing
            continue
    return sorted(found, key=lambda m: (_date(m.message), m.key))


def _date(message: Message) -> float:
    try:
        return parsedate_to_datetime(str(message["Date"])).timestamp()
    except (TypeError, ValueError):
        return 0.0


def main(argv: list[str] | None = None) -> None:
    from settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m services.mail_catcher", description="Read caught mail.")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="one line a message")
    listing.add_argument("--to", help="only messages to this address")
    show = commands.add_parser("show", help="print one message")
    show.add_argument("which", help="its number in the list, or its Message-ID")
    args = parser.parse_args(argv)

    mail_dir = load_settings().mail_dir
    mails = caught_mail(mail_dir)
    if args.command == "list":
        shown = [m for m in mails if not args.to or args.to.lower() in m.to.lower()]
        for number, mail in enumerate(mails, start=1):
            if mail in shown:
                print(f"{number}\t{mail.header('Date')}\t{mail.to}\t{mail.subject}")
        print(f"{len(shown)} message(s) in {mail_dir}")
        return
    chosen = [m for m in mails if m.message_id.strip("<>") == args.which.strip("<>")]
    if not chosen and args.which.isdigit() and 1 <= int(args.which) <= len(mails):
        chosen = [mails[int(args.which) - 1]]
    if not chosen:
        raise SystemExit(f"no message {args.which!r} in {mail_dir} ({len(mails)} there)")
    print(chosen[0].message.as_string())


if __name__ == "__main__":
    main()

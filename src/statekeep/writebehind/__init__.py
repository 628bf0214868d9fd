"""Write-behind: enqueue writes that are stored in the background, in batches,
by priority, surviving a crash once acknowledged durable."""

from ._arguments import check_deadline, check_expect_version, check_options, check_priority
from ._claim import held, holding
from ._engine import WriteBehind
from ._letters import letter_id, letters_under, remove_letters
from ._location import has_leftovers, journal_dir
from ._options import DeadLetter, Policy, Priority, Stats, WriteBehindOptions
from ._receipt import Receipt
from ._shutdown import at_open, install_sigterm_handler
from ._storing import BatchHooks, Change
from ._survey import JournalSurvey, survey

__all__ = [
    "BatchHooks",
    "Change",
    "DeadLetter",
    "JournalSurvey",
    "Policy",
    "Priority",
    "Receipt",
    "Stats",
    "WriteBehind",
    "WriteBehindOptions",
    "at_open",
    "check_deadline",
    "check_expect_version",
    "check_options",
    "check_priority",
    "has_leftovers",
    "held",
    "holding",
    "install_sigterm_handler",
    "journal_dir",
    "letter_id",
    "letters_under",
    "remove_letters",
    "survey",
]

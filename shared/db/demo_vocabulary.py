"""Word lists for demo data: realistic-looking names, sentences and titles (no I/O)."""

from __future__ import annotations

import random
from collections.abc import Callable


def _words(text: str) -> tuple[str, ...]:
    return tuple(word.strip() for word in text.split("|"))


# Small built-in vocabularies: enough variety to look real, no Faker dependency.
FIRST = _words(
    "Ana|Ben|Chloe|Daniel|Elif|Farah|Gabriel|Hana|Ibrahim|Julia|Kenji|Lena|Mateo|Nadia|Oliver|"
    "Priya|Quentin|Rosa|Samuel|Tara|Umar|Valentina|Wei|Xavier|Yara|Zoe|Amara|Bjorn|Carmen|"
    "Dmitri|Emeka|Freya|Hugo|Ines|Jonas|Kofi|Leila|Marco|Noor|Oskar|Paula|Rahul|Sofia|Tomas"
)
LAST = _words(
    "Silva|Okafor|Nakamura|Schmidt|Dubois|Garcia|Rossi|Kowalski|Johansson|Haddad|Patel|Kim|"
    "Nguyen|Mensah|Ivanov|Hansen|Costa|Novak|Yilmaz|Fischer|Murphy|Chen|Lopez|Andersen|Moreau|"
    "Bianchi|Tanaka|Osei|Fernandes|Berg|Khan|Smith|Jones|Brown|Wilson|Taylor|Martin|Lee|Walker"
)
LOCALES = tuple(
    tuple(pair.split())
    for pair in _words(
        "en-US America/New_York|en-US America/Los_Angeles|en-GB Europe/London|de-DE Europe/Berlin|"
        "fr-FR Europe/Paris|es-ES Europe/Madrid|pt-BR America/Sao_Paulo|ja-JP Asia/Tokyo|"
        "nb-NO Europe/Oslo|en-IN Asia/Kolkata|en-NG Africa/Lagos|en-AU Australia/Sydney|"
        "pl-PL Europe/Warsaw|tr-TR Europe/Istanbul"
    )
)
DOMAINS = ("example.com", "example.org", "example.net")  # reserved for documentation (RFC 2606)
COMPANIES = _words(
    "Acme Corp|Globex|Initech|Northwind Traders|Contoso|Fabrikam|Hooli|Vandelay Industries|"
    "Tyrell Systems|Wonka Industries|Umbrella Health|Soylent Labs"
)
THINGS = _words(
    "release notes|onboarding flow|billing page|search index|mobile build|sync engine|export job|"
    "status page|pricing table|invite emails|roadmap|quarterly report|design system|API docs|"
    "retry logic|dashboard|budget|offsite agenda|contract|hiring plan|launch checklist|"
    "backup policy"
)
WORDS = {
    "thing": THINGS,
    "name": FIRST,
    "verb": _words(
        "ship|review|update|refactor|test|document|migrate|deploy|revisit|simplify|split|archive|"
        "estimate|prioritise"
    ),
    "past": _words("checked|reviewed|updated|tested|merged|deployed|rewrote|benchmarked"),
    "when": _words(
        "today|tomorrow|this afternoon|on Monday|next week|before Friday|after the standup|"
        "by end of day|this sprint|next sprint"
    ),
    "adj": _words(
        "good|much faster|almost done|a bit flaky|ready for review|blocked|broken again|"
        "fine on staging|slower than expected"
    ),
    "option": _words(
        "Postgres|S3|a weekly cadence|the new vendor|plan B|feature flags|the simpler design|"
        "quarterly releases"
    ),
}
SENTENCES = _words(
    "Can we {verb} the {thing} {when}?|I {past} the {thing} and it looks {adj}.|"
    "{name}, could you take a look at the {thing}?|The {thing} is {adj}, thanks {name}.|"
    "Let's {verb} the {thing} {when}.|Just pushed a fix for the {thing}.|"
    "Heads up: the {thing} is {adj}.|Does anyone know why the {thing} is {adj}?|"
    "I think we should {verb} the {thing} first.|Great work on the {thing}, {name}!|"
    "Reminder: {thing} review {when}.|Who owns the {thing} these days?|"
    "{name} and I will {verb} the {thing} {when}.|Any objections to {option} for the {thing}?"
)
SHORT_REPLIES = _words(
    "ok|Thanks!|Sounds good 👍|On it.|+1|Will do.|Agreed.|Makes sense.|Nice!|Done ✅|"
    "Let me check.|👀|lol|Good catch."
)
TASK_TITLES = _words(
    "Follow up with {name} about the {thing}|Review the {thing}|Send the {thing} to {name}|"
    "{verb} the {thing} {when}|Ask {name} about {option}|Fix the {thing}"
)
DECISION_TITLES = _words("Use {option} for the {thing}|Postpone the {thing}|{verb} the {thing}")
OUTCOMES = _words(
    "We will {verb} the {thing} {when}.|Go with {option}; revisit {when}.|"
    "Agreed to {verb} the {thing} using {option}.|No change for now; {name} owns the follow-up."
)
RATIONALES = _words(
    "The {thing} is {adj} and blocks the launch.|{option} is cheaper to run.|"
    "{name} showed that the {thing} is {adj}.|Fewer moving parts before {when}."
)
SETTINGS: dict[str, Callable[[random.Random], object]] = {
    "theme": lambda r: r.choice(("light", "dark", "system")),
    "notifications.email": lambda r: r.random() < 0.6,
    "notifications.push": lambda r: {"enabled": r.random() < 0.8, "quiet": ["22:00", "07:00"]},
    "compose.enter_to_send": lambda r: r.random() < 0.7,
    "sidebar.collapsed": lambda r: r.random() < 0.3,
    "digest.frequency": lambda r: r.choice(("daily", "weekly", "never")),
    "privacy.read_receipts": lambda r: r.random() < 0.75,
    "messages.font_scale": lambda r: r.choice((0.9, 1.0, 1.0, 1.1, 1.25)),
}

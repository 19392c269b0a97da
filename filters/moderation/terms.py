"""Default categories: modest, factual term lists and patterns in English and Chinese.

Single words that are everyday vocabulary ("kill", "shoot", "杀掉") are never terms on their own:
they count only with a person as the object, or in a phrase that says what is meant, so "kill the
process", "shoot a photo" and "杀掉进程" pass. No slur is spelled out; hate is caught by what is
said about a group. Patterns are matched against normalized (lower-case) text; see `lexicon`.

This is a floor, not a model: a classifier over the `/v1/moderations` wire gives real coverage.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from filters.moderation.lexicon import CategorySpec

VIOLENCE = "violence"
SELF_HARM = "self_harm"
SEXUAL_MINORS = "sexual_minors"
HATE = "hate"
ILLEGAL = "illegal"

# People as the object of a threat (a thing or a process is not).
_PEOPLE = (
    r"(?:you|u|ya|him|her|them|y'all|everyone|everybody|people"
    r"|(?:your|his|her|their) (?:whole )?(?:family|kids|children|wife|husband|mom|mother|dad"
    r"|father|parents|son|daughter|friends?|boyfriend|girlfriend|baby))"
)
_NOT_A_MESSAGE = r"(?! an? (?:email|e-mail|message|text|note|line|invite|dm)\b)"
_HARM_VERBS = (
    r"(?:kill|murder|hurt|stab|shoot|strangle|beat up|torture|slaughter|butcher|behead|choke"
    r"|maim|harm|rape)"
)
_WILL = (
    r"(?:i|we)(?:'ll| will| shall|'m going to| am going to|'m gonna| am gonna| gonna"
    r"|'re going to| are going to)"
)
_PLACES = (
    r"(?:school|church|mosque|synagogue|temple|mall|concert|crowd|hospital|stadium|airport"
    r"|subway|station|parade|office|classroom)"
)
_ZH_PEOPLE = "(?:你全家|你们|你|他们|他|她|她们)"
_ZH_GROUP = (
    "(?:黑人|白人|犹太人|穆斯林|回民|同性恋|女人|外地人|河南人|东北人|日本人|韩国人|移民|难民"
    "|少数民族|残疾人)"
)
_GROUP = (
    r"(?:jews|muslims|christians|blacks|whites|asians|arabs|mexicans|immigrants|refugees|gays"
    r"|lesbians|trans people|women|(?:black|white|asian|gay|jewish|muslim|trans) people"
    r"|chinese|indians|africans|hindus|catholics|latinos)"
)
_MINOR = (
    r"(?:child(?:ren)?|kids?|minors|underage|under-age|pre-?teens?|little (?:girls?|boys?)"
    r"|(?:[1-9]|1[0-7])[- ]?(?:year|yr)s?[- ]old|schoolgirls?|schoolboys?|toddlers?|infants?)"
)
_SEXUAL = (
    r"(?:porn\w*|nudes?|naked(?! eye)|nudity|sexual(?:ly)?(?! (?:health|education))"
    r"|sex(?! ?ed(?:ucation)?\b)|erotic\w*|lewd|molest\w*|rape)"
)
# Within one clause: after normalization full-width commas, marks are ASCII; the ideographic
# full stop and enumeration comma are not.
_CLAUSE = "[^,.!?;\u3002\u3001]"
_ZH_MINOR = "(?:未成年|儿童|幼童|幼女|女童|男童|小学生|初中生|萝莉)"
_ZH_SEXUAL = "(?:色情|裸照|裸体|性行为|性交|性侵|猥亵|奸淫)"

_DEFAULTS: dict[str, CategorySpec] = {
    VIOLENCE: CategorySpec(
        terms=("血洗", "屠杀", "杀你全家"),
        patterns=(
            rf"{_WILL} (?:\S+ ){{0,6}}?{_HARM_VERBS} {_PEOPLE}{_NOT_A_MESSAGE}",
            rf"(?:kill|murder|stab|strangle|behead|slaughter|torture) {_PEOPLE}{_NOT_A_MESSAGE}",
            rf"(?:beat|stab|shoot|strangle|burn) {_PEOPLE} to death",
            r"(?:find|found out|know|learn) where (?:you|your \w+)"
            r" (?:live|lives|sleep|sleeps|work)",
            r"you(?:'re| are) (?:going to|gonna) (?:die|bleed)",
            r"(?:shoot up|bomb|blow up|attack|burn down) (?:the |a |this |that |your |our )?"
            + _PLACES,
            rf"(?:杀|杀了|杀死|弄死|砍死|打死|捅死|宰了|干掉|砍了){_ZH_PEOPLE}",
            f"我(?:要|会|一定会|迟早|早晚){_CLAUSE}{{0,8}}(?:杀|弄死|砍|捅|伤害|打死)",
            "(?:找到|知道|查到)你(?:住在?哪|家在哪|住的地方|家住)",
            "伤害你的(?:家人|孩子|父母|老婆|妻子)",
            "(?:炸掉|炸毁|炸了)(?:学校|商场|大楼|地铁|医院|车站|机场)",
        ),
    ),
    SELF_HARM: CategorySpec(
        terms=("suicide", "suicidal", "self-harm", "self harm", "自杀", "轻生", "割腕", "自残"),
        patterns=(
            r"(?:kill|killing|hurt|hurting|cut|cutting|hang|hanging|harm|harming|starve|starving)"
            r" myself",
            r"end(?:ing)? (?:my (?:own )?life|it all)",
            r"take my (?:own )?life",
            r"(?:want|wanna|ready) to die",
            r"(?:don't|do not) want to (?:live|be alive|wake up)",
            r"slit(?:ting)? my wrists?",
            r"overdos(?:e|ing) on purpose",
            "想死|不想活|活不下去|结束(?:自己|我)的生命",
            "跳楼(?!价|大甩卖|甩卖)|上吊|安眠药.{0,4}(?:一次|全部|吞)",
        ),
    ),
    SEXUAL_MINORS: CategorySpec(
        terms=("csam", "child porn", "child pornography", "lolicon", "shotacon", "儿童色情"),
        patterns=(
            rf"{_MINOR}(?:\W+\w+){{0,4}}?\W+{_SEXUAL}",
            rf"{_SEXUAL}(?:\W+\w+){{0,4}}?\W+{_MINOR}",
            r"p(?:a|ae)?edophil\w*",
            f"{_ZH_MINOR}{_CLAUSE}{{0,6}}{_ZH_SEXUAL}",
            f"{_ZH_SEXUAL}{_CLAUSE}{{0,6}}{_ZH_MINOR}",
            "恋童",
        ),
    ),
    HATE: CategorySpec(
        terms=(
            "white power",
            "heil hitler",
            "master race",
            "racial holy war",
            "劣等民族",
            "劣等人种",
        ),
        patterns=(
            rf"{_GROUP} (?:should|must|need to|deserve to|ought to) (?:all )?(?:die|be killed"
            r"|be exterminated|be wiped out|be gassed|burn|be eradicated|hang)",
            r"(?:exterminate|eradicate|wipe out|gas|kill all|get rid of all) (?:the |all )?"
            + _GROUP,
            rf"{_GROUP} (?:are|is) (?:all )?(?:subhuman|vermin|animals|parasites|cockroaches|rats"
            r"|a disease|inferior|not human)",
            r"subhumans?",
            f"{_ZH_GROUP}(?:都)?(?:该死|去死|应该(?:被)?(?:消灭|杀光|赶出去|去死)|不是人"
            "|是(?:劣等|低等)|是畜生|是蟑螂|是寄生虫)",
            f"(?:消灭|杀光|灭绝|清除)(?:所有|一切)?的?{_ZH_GROUP}",
        ),
    ),
    ILLEGAL: CategorySpec(
        terms=("hitman for hire", "credit card dumps", "办假证", "代开发票", "制毒", "贩毒"),
        patterns=(
            r"how (?:do i|to|can i|can you|would i|could i)(?: \w+){0,3}? (?:make|build|cook"
            r"|synthesi[sz]e|produce|manufacture) (?:a |an |some )?(?:\w+ )?(?:(?<!bath )bomb"
            r"|explosives?|meth|methamphetamine|fentanyl|heroin|cocaine|crack|napalm|ricin|sarin"
            r"|nerve agent|molotov(?: cocktail)?)s?",
            r"(?:buy|sell|order|score|source|get) (?:some |a |an )?(?:\w+ )?(?:cocaine|heroin"
            r"|meth|fentanyl|mdma|ecstasy|lsd|illegal (?:guns?|firearms?|weapons?)"
            r"|unregistered (?:guns?|firearms?)|stolen credit cards?|fake (?:passports?|ids?"
            r"|id cards?)|counterfeit (?:money|bills|currency|passports?))",
            r"launder(?:ing)? (?:the |my |our |dirty |drug )?(?:money|cash|proceeds|funds)",
            r"(?:help me|how to|how do i|ways to|where to) launder",
            r"hire (?:a |an )?(?:hitman|hit man|assassin|contract killer)",
            r"(?:hack|break) into (?:my |his |her |their |someone's |someone else's |a |an )?"
            r"(?:\w+'s )?(?:email|account|phone|wifi|bank account|instagram|facebook|icloud)",
            f"(?:怎么|如何|教我)(?:制作|做|合成|制造){_CLAUSE}{{0,4}}(?:炸弹|炸药|冰毒|毒品)",
            "(?:制作|自制)(?:炸弹|炸药)|制冰毒",
            "(?:买|卖|出售|购买)(?:毒品|冰毒|海洛因|枪支|手枪|假钞|假币|假证)",
            "(?<!反)洗钱",
            "(?:雇|请|找)(?:个|一个|佣)?杀手",
            "黑进(?:别人|他人|前任|我前任)的?(?:账号|邮箱|手机|微信)",
        ),
    ),
}

DEFAULT_CATEGORIES: Mapping[str, CategorySpec] = MappingProxyType(_DEFAULTS)
"""The categories shipped with the filter, by name (read-only)."""

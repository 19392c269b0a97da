"""Weighted signals of an instruction aimed at the agent, hidden in what a tool returned.

Each signal that occurs adds its weight once; a tool output scoring at or over the threshold
(default 1.0) is a prompt injection. Strong signals (an override of earlier instructions, a chat
template's role marker) weigh 1.0 alone; weak ones ("system prompt", "you are now", a link after
"send") need company, so documentation and API replies that merely mention them pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Patterns run on NFKC text: full-width punctuation is ASCII by then.
# Zero-width and bidi controls hide text from a human reviewer; Unicode tag characters
# (U+E0000-U+E007F) smuggle whole ASCII sentences invisibly.
INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
TAGS = re.compile("[\U000e0000-\U000e007f]")

_PRIOR = r"(?:previous|prior|above|earlier|preceding|foregoing|original|system)"
_ORDERS = r"(?:instructions?|directions?|directives?|prompts?|rules|guidelines|messages|context)"
_AGENT = r"(?:ai|assistant|model|agent|llm|chatbot|language model|copilot|claude|gpt|chatgpt)"
_TARGET = r"(?:https?://\S+|[\w.+-]+@[\w-]+\.[\w.-]+|webhook|attacker|this address)"


@dataclass(frozen=True, slots=True)
class Signal:
    """One pattern and what it adds to the score; `name` is logged, never the text."""

    name: str
    pattern: re.Pattern[str]
    weight: float


def _s(name: str, pattern: str, weight: float) -> Signal:
    return Signal(name, re.compile(pattern, re.IGNORECASE | re.MULTILINE), weight)


SIGNALS: tuple[Signal, ...] = (
    _s(
        "override",
        rf"\b(?:ignore|disregard|forget|override|bypass|skip)\s+(?:all\s+|any\s+|the\s+|your\s+)*"
        rf"(?:of\s+)?(?:the\s+|your\s+)?{_PRIOR}\s+{_ORDERS}",
        1.0,
    ),
    _s(
        "override_weak",
        r"\b(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+)?(?:of\s+)?(?:your|these|those)?"
        r"\s*(?:instructions|rules|guidelines|directives)\b",
        0.6,
    ),
    _s(
        "override_zh",
        "(?:忽略|无视|忘记|忘掉|不要理会|跳过)(?:掉)?(?:你)?(?:之前|以上|上面|先前|前面|原来|原有|所有|系统)(?:的)?(?:所有)?(?:的)?(?:指令|指示|说明|提示|规则|要求|设定)",
        1.0,
    ),
    _s(
        "role_marker",
        r"<\|im_start\|>|<\|im_end\|>|<\|system\|>|<\|(?:start|end)_header_id\|>",
        1.0,
    ),
    _s("template_marker", r"\[/?INST\]|<</?SYS>>", 0.8),
    _s("role_header", r"^\s*#{2,}\s*(?:system|instructions?|new instructions?)\s*:", 0.8),
    _s("role_line", r"^\s*(?:system|assistant)\s*:\s*\S", 0.4),
    _s("new_instructions", r"\b(?:new|updated|real|actual|additional)\s+instructions?\s*:", 0.8),
    _s("new_instructions_zh", "新(?:的)?(?:指令|指示|任务)\\s*:", 0.8),
    _s("you_are_now", r"\byou\s+are\s+now\b|\bfrom\s+now\s+on,?\s+you\b", 0.4),
    _s("you_are_now_zh", "你现在是|从现在(?:开始|起),?你", 0.4),
    _s("system_prompt", r"\bsystem\s+prompt\b", 0.3),
    _s(
        "reveal_prompt",
        r"\b(?:reveal|print|show|output|repeat|leak|send)\s+(?:me\s+)?(?:your|the)\s+"
        r"(?:system\s+prompt|instructions|hidden\s+prompt)",
        0.8,
    ),
    _s("system_prompt_zh", "系统提示(?:词)?|(?:泄露|输出|显示)(?:你的)?(?:指令|提示词)", 0.4),
    _s("disregard", r"\bdisregard\b|\bdo\s+not\s+follow\b", 0.3),
    _s("addressed_to_agent", rf"\b(?:dear|attention|note\s+to\s+the|hey|hello)\s+{_AGENT}\b", 0.5),
    _s(
        "as_an_ai",
        rf"\b(?:if\s+you\s+are\s+an?|as\s+an?|to\s+the)\s+{_AGENT}\b.{{0,40}}\byou\s+must\b",
        0.6,
    ),
    _s(
        "hide_from_user",
        r"\b(?:do\s+not|don't|never)\s+(?:tell|inform|mention|reveal|show)\b.{0,30}\bthe\s+user\b"
        r"|\bwithout\s+(?:telling|informing|asking|notifying)\s+the\s+user\b",
        0.8,
    ),
    _s("hide_from_user_zh", "不要(?:告诉|通知|让)用户|别告诉用户|瞒着用户", 0.8),
    _s(
        "exfiltrate",
        r"\b(?:send|forward|exfiltrate|upload|post|email|transmit|leak|copy)\s+(?:all\s+|the\s+|"
        r"any\s+|every\s+|their\s+|your\s+|the\s+user'?s\s+)*(?:data|conversation|chat\s+history"
        r"|history|credentials?|passwords?|api\s+keys?|secrets?|tokens?|files?|emails?|contents?"
        r"|messages|documents?|keys|cookies)\b.{0,60}?\b(?:to|at)\s+" + _TARGET,
        1.0,
    ),
    _s("exfiltrate_bare", r"\bexfiltrat\w*", 0.6),
    _s(
        "exfiltrate_zh",
        "(?:发送|转发|上传|发给|泄露|抄送)[^。\n]{0,30}(?:到|给|至)\\s*(?:https?://|[\\w.+-]+@)",
        1.0,
    ),
    _s(
        "hidden_comment",
        rf"<!--(?:(?!-->)[\s\S]){{0,500}}?\b(?:ignore|instructions?|{_AGENT}|you\s+must|system)\b",
        0.8,
    ),
    _s("hidden_comment_zh", "<!--(?:(?!-->)[\\s\\S]){0,500}?(?:忽略|指令|你必须|系统)", 0.8),
)
"""The default signals, strongest first."""

INVISIBLE_WEIGHT = 0.5
"""Invisible characters inside a tool output: suspicious, not damning (some CMSs emit them)."""
TAGS_WEIGHT = 1.0
"""Unicode tag characters: no legitimate tool output carries hidden ASCII."""

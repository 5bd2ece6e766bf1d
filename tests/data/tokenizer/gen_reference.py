# Reference ids for tests/tokenizer.rs. Run once by hand; not needed by the test suite.
# Setup (2026-11-25): python3.11 -m venv v && v/bin/pip install transformers==5.24.0
#   tokenizers==0.23.3 sentencepiece==0.2.3 protobuf six regex; /tmp/uerpy holds UER-py HEAD's
#   `uer/` (git archive) and `models/special_tokens_map.json`; cases from make_cases.py in
#   /tmp/tokref/cases.json. Outputs: /tmp/tokref/ref.json (→ emit_rust.py → the case tables),
#   corpus_bert.txt, corpus_spm.txt. make_tricky.py reuses this file's set-up for tricky.jsonl.
import sys, types, json, hashlib, os
from transformers import BertTokenizer
sys.modules['torch'] = types.ModuleType('torch')  # uer/utils/__init__ imports torch; tokenizers.py does not use it
os.chdir('/tmp/uerpy')  # uer.utils.constants opens models/special_tokens_map.json
sys.path.insert(0, '/tmp/uerpy')
import importlib.util
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(spec)
    sys.modules[name] = m; spec.loader.exec_module(m); return m
pkg = types.ModuleType('uer'); pkg.__path__ = ['/tmp/uerpy/uer']; sys.modules['uer'] = pkg
up = types.ModuleType('uer.utils'); up.__path__ = ['/tmp/uerpy/uer/utils']; sys.modules['uer.utils'] = up
load('uer.utils.constants', '/tmp/uerpy/uer/utils/constants.py')
load('uer.utils.misc', '/tmp/uerpy/uer/utils/misc.py')
load('uer.utils.vocab', '/tmp/uerpy/uer/utils/vocab.py')
T = load('uer.utils.tokenizers', '/tmp/uerpy/uer/utils/tokenizers.py')

class Args: pass
VOCAB = '/work/shared/data/vocab/google_zh_vocab.txt'
SPM = '/work/shared/data/vocab/cluecorpussmall_spm.model'
a = Args(); a.spm_model_path = None; a.vocab_path = VOCAB; a.do_lower_case = "true"
uer_bert = T.BertTokenizer(a)
a2 = Args(); a2.spm_model_path = SPM; a2.vocab_path = None; a2.do_lower_case = "true"
uer_spm = T.BertTokenizer(a2)
hf = BertTokenizer(VOCAB, do_lower_case=True)
import sentencepiece as spm
sp = spm.SentencePieceProcessor(); sp.Load(SPM)

def uer_ids(tok, text):
    return tok.convert_tokens_to_ids(tok.tokenize(text))

cases = json.load(open('/tmp/tokref/cases.json'))
out = {'bert': [], 'spm': []}
for text in cases['bert']:
    u_t = uer_bert.tokenize(text); u = uer_bert.convert_tokens_to_ids(u_t)
    h = hf.encode(text, add_special_tokens=False); h_t = hf.convert_ids_to_tokens(h)
    out['bert'].append({'text': text, 'uer': u, 'uer_tokens': u_t, 'hf': h, 'hf_tokens': h_t})
for text in cases['spm']:
    u_t = [T.printable_text(p) for p in uer_spm.tokenize(text)]; u = uer_spm.convert_tokens_to_ids(uer_spm.tokenize(text))
    p = sp.EncodeAsPieces(text); i = sp.EncodeAsIds(text)
    out['spm'].append({'text': text, 'uer': u, 'uer_tokens': u_t, 'spm': i, 'spm_pieces': p})
json.dump(out, open('/tmp/tokref/ref.json', 'w'), ensure_ascii=False, indent=1)

# Corpus digests: sha256 of the ids ("1 2 3") per line, first 16 hex digits.
def digest(ids): return hashlib.sha256(' '.join(map(str, ids)).encode()).hexdigest()[:16]
lines = open('/work/shared/data/corpora/CLUECorpusSmall_sampled.txt', encoding='utf-8').read().split('\n')
with open('/tmp/tokref/corpus_bert.txt', 'w') as f:
    for n, line in enumerate(lines):
        f.write(f"{digest(uer_ids(uer_bert, line))} {digest(hf.encode(line, add_special_tokens=False))}\n")
with open('/tmp/tokref/corpus_spm.txt', 'w') as f:
    for n, line in enumerate(lines):
        f.write(f"{digest(uer_ids(uer_spm, line))} {digest(sp.EncodeAsIds(line))}\n")
print('done', len(lines))

# Turns ref.json (from gen_reference.py) into the case tables pasted into tests/tokenizer.rs.
import json, sys, unicodedata
r = json.load(open(sys.argv[1] if len(sys.argv) > 1 else '/tmp/tokref/ref.json'))
def visible(c):
    return c not in '"\\' and (c == ' ' or unicodedata.category(c)[0] not in 'CZ') and c != '\ufffd'
def rs(s):
    return '"' + ''.join(c if visible(c) else '\\u{%x}' % ord(c) for c in s) + '"'
def toks(t): return '&[' + ', '.join(rs(x) for x in t) + ']'
def ids(t): return '&[' + ', '.join(map(str, t)) + ']'
out = ['/// One reference case: (text, tokens, ids, ids of the other implementation).',
       "type Case = (&'static str, &'static [&'static str], &'static [u32], &'static [u32]);", '',
       '/// BERT cases: (text, UER-py tokens, UER-py ids, transformers ids).',
       'const BERT_CASES: &[Case] = &[']
for c in r['bert']:
    out.append(f'    ({rs(c["text"])}, {toks(c["uer_tokens"])}, {ids(c["uer"])}, {ids(c["hf"])}),')
out += ['];', '', '/// Sentencepiece cases: (text, UER-py pieces, UER-py ids, sentencepiece EncodeAsIds).',
        'const SPM_CASES: &[Case] = &[']
for c in r['spm']:
    out.append(f'    ({rs(c["text"])}, {toks(c["uer_tokens"])}, {ids(c["uer"])}, {ids(c["spm"])}),')
out.append('];')
print('\n'.join(out))

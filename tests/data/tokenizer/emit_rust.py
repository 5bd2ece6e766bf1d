import json
r = json.load(open('/tmp/tokref/ref.json'))
def rs(s): 
    return '"' + ''.join(c if c not in '"\\' and 32 <= ord(c) and ord(c) != 127 else '\\u{%x}' % ord(c) for c in s) + '"'
def toks(t): return '&[' + ', '.join(rs(x) for x in t) + ']'
def ids(t): return '&[' + ', '.join(map(str, t)) + ']'
out = []
out.append('/// BERT cases: (text, UER-py tokens, UER-py ids, transformers ids).')
out.append('const BERT_CASES: &[(&str, &[&str], &[u32], &[u32])] = &[')
for c in r['bert']:
    out.append(f'    ({rs(c["text"])}, {toks(c["uer_tokens"])}, {ids(c["uer"])}, {ids(c["hf"])}),')
out.append('];')
out.append('')
out.append('/// Sentencepiece cases: (text, UER-py pieces, UER-py ids, sentencepiece EncodeAsIds).')
out.append('const SPM_CASES: &[(&str, &[&str], &[u32], &[u32])] = &[')
for c in r['spm']:
    out.append(f'    ({rs(c["text"])}, {toks(c["uer_tokens"])}, {ids(c["uer"])}, {ids(c["spm"])}),')
out.append('];')
open('/tmp/tokref/cases.rs', 'w').write('\n'.join(out) + '\n')

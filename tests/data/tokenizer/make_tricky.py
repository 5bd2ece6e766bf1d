import random, json, sys
sys.argv=['x']
# Random strings over a pool of tricky characters; ids as 16-hex sha256 digests.
exec(open(__file__.replace('make_tricky.py', 'gen_reference.py')).read().split("cases = json.load")[0])
random.seed(1)
pool = list("我爱北京天安门的了是一二三四五六七八九十年月日中国人") + list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") + list("0123456789") \
 + list(",.;:!?'\"()[]{}<>-_/\\@#$%^&*+=~`|") + list("，。；：！？“”‘’（）【】《》、…—·～") \
 + [" ", " ", "  ", "\t", "\n", "\r\n", "\u3000", "\u00a0", "\u200b", "\ufeff", "\u2028", "\u0085", "\x01", "\x7f", "\x00", "\ufffd"] \
 + list("éèêëàâîïôöùûüçñÅÉ") + ["e\u0301", "a\u0308", "\u0301"] + ["😀", "👍🏻", "👨‍👩‍👧", "🇨🇳"] + list("ＡＢＣａｂｃ１２３！？，") \
 + list("안녕하세요こんにちはカタカナ") + list("٠١٢३४") + list("①②²³½ﬁ") + list("ΣΑΣσςİßŉ") + ["[MASK]", "[CLS]", "[unused1]", "1,", "2，", "。2，", "?1,"] \
 + ["\ue000", "𠮷", "𪚥", "㐀", "丽"] + ["hello", "world", "unaffable", "BERT", "GPT-2", "UER-py", "100", "3.14", "2020年"]
texts = []
for n in range(1500):
    k = random.randint(0, 25)
    texts.append(''.join(random.choice(pool) for _ in range(k)))
import hashlib
def dg(ids): return hashlib.sha256(' '.join(map(str, ids)).encode()).hexdigest()[:16]
with open('/tmp/tokref/tricky.jsonl', 'w') as f:
    for t in texts:
        rec = {'text': t,
               'uer_bert': dg(uer_ids(uer_bert, t)),
               'hf': dg(hf.encode(t, add_special_tokens=False)),
               'uer_spm': dg(uer_spm.convert_tokens_to_ids(uer_spm.tokenize(t))),
               'spm': dg(sp.EncodeAsIds(t))}
        f.write(json.dumps(rec, ensure_ascii=False) + '\n')
print('ok', len(texts))

import json
long_word = "hello" * 30  # 150 chars: under UER's 200 limit, over transformers' 100
bert = [
 "我爱北京天安门。",
 "UER-py 是一个开源的预训练框架，支持 BERT、GPT-2 等 100 多种模型！",
 "价格：¥1,299.00（含税）；电话 010-12345678，邮箱 test@example.com",
 "今天天气真好😀👍🏻，我们去play吧～",
 "Café Déjà vu naïve ÉCOLE Ångström",
 long_word,
 "\tHello\u00a0World\u200b！\r\n第二行\u3000全角空格\x00\ufffd结束",
 "北京是[MASK]国的首都",
 "こんにちは 안녕하세요 Привет мир",
 "ＡＢＣ１２３，ｈｅｌｌｏ",
 "𠮷野家的unaffable服务员",
 "iPhone14ProMax售价8999元，macOS Ventura 13.0.1",
 "",
 "   ",
]
spm = [
 "最近一趟去北京的[MASK]几点发车",
 "UER-py 是一个开源的预训练框架，支持 BERT、GPT-2 等 100 多种模型！",
 "价格：¥1,299.00（含税）；电话 010-12345678",
 "今天天气真好😀👍🏻，我们去play吧～",
 "  前后有空格  中间  也有\t制表符 ",
 "\t开头是制表符",
 "\u3000全角空格开头",
 "第1。2，3。1，还有?1,结尾",
 "ＡＢＣ１２３，ｈｅｌｌｏ Café",
 "𠮷野家𠮷𠮷",
 "[MASK][MASK]连续[unused1]",
 "",
 "   ",
]
json.dump({'bert': bert, 'spm': spm}, open('/tmp/tokref/cases.json', 'w'), ensure_ascii=False)

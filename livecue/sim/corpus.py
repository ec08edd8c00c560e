"""The simulator's text corpus: chat messages by intent, and product names by category.

Messages are what a 直播带货 room actually reads like: short, repetitive, mostly Chinese with a
little English, full of purchase intent (链接 / 怎么买 / 多少钱 / 还有吗 / 拍了 / 上车) and, right
after a release sells out, "没抢到". The simulator picks a category by the show's phase, then a
message; some messages take the SKU's link number or a body size.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CHAT", "PRODUCTS", "CATEGORIES", "ENGLISH_SHARE"]

#: Share of chat lines drawn from the English pool of a category (overseas / bilingual viewers).
ENGLISH_SHARE: Final = 0.06

#: category -> (Chinese messages, English messages). ``{n}`` is the on-air link number,
#: ``{h}`` a height in cm, ``{w}`` a weight in 斤.
CHAT: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "greeting": (
        (
            "来了来了", "主播好", "晚上好呀", "刚来，今天卖什么", "新人报道", "又来了", "打卡",
            "姐妹们好", "主播今天好漂亮", "从首页刷到的", "第一次来", "下班就来了", "老粉来了",
            "来啦来啦", "蹲了好久了", "今天有福利吗",
        ),
        ("hi", "hello from Malaysia", "hi everyone", "first time here"),
    ),
    "question": (
        (
            "多少钱", "这个多少钱", "{h}穿什么码", "{h}{w}斤穿什么码", "有优惠吗", "能便宜点吗",
            "是几号链接", "什么材质的", "会起球吗", "有几个颜色", "包邮吗", "偏大还是偏小",
            "敏感肌能用吗", "保质期多久", "什么时候发货", "和上次那个一样吗", "有赠品吗",
            "{n}号多少钱", "主播身高多少", "能试一下黑色吗", "尺码怎么选",
        ),
        ("how much?", "what size for {h}cm?", "does it ship overseas?", "what material?"),
    ),
    "intent": (
        (
            "链接", "求链接", "链接在哪", "怎么买", "怎么买啊", "多少钱", "还有吗", "拍了", "已拍",
            "拍了拍了", "上车", "上车上车", "我要", "要了", "想要", "{n}号链接", "{n}号", "冲",
            "买买买", "给我留一个", "已下单", "怎么拍", "快上链接", "可以拍了吗", "等链接",
            "还能拍吗", "拍了两件",
        ),
        ("link please", "how to buy?", "bought!", "I want one", "where is the link"),
    ),
    "missed": (
        (
            "没抢到", "没抢到啊", "没抢到！！", "又没抢到", "还有吗", "怎么没了", "手慢了",
            "秒没", "补货", "再上点", "再上一波", "加库存", "还能再放点吗", "一秒就没了",
            "没抢到呜呜", "已售罄？", "求补货",
        ),
        ("missed it", "sold out already?", "restock please", "too fast!"),
    ),
    "complaint": (
        (
            "发货太慢了", "上次买的质量一般", "卡了", "主播说话快点", "讲太久了", "怎么退款",
            "客服不回消息", "价格比别家贵", "没意思", "换个产品吧", "又是这个", "好无聊",
            "画面卡住了", "还在讲这个", "换下一个吧",
        ),
        ("lagging", "too expensive", "boring"),
    ),
    "chat": (
        (
            "好看", "主播好美", "哈哈哈", "哈哈哈哈哈", "666", "支持", "爱了", "已关注", "点赞",
            "好好看", "绝了", "真不错", "这个颜色好看", "上身效果好", "种草了", "主播辛苦了",
            "好便宜", "划算", "回购了", "已经买过了，很好用", "❤❤❤", "👍👍",
        ),
        ("so cute", "love it", "nice", "lol"),
    ),
}

#: category -> products (name, base price in cents) by lineup role.
PRODUCTS: Final[dict[str, dict[str, tuple[tuple[str, int], ...]]]] = {
    "服装": {
        "traffic_driver": (("纯棉基础款短袖T恤", 990), ("冰丝防晒袖套两双装", 990), ("纯棉船袜5双装", 1990)),
        "giveaway": (("发圈头绳10个装", 100), ("真丝眼罩", 990)),
        "hero": (("冰丝阔腿裤", 5990), ("法式碎花连衣裙", 7990), ("高腰显瘦牛仔裤", 6990)),
        "profit": (("100%山羊绒开衫", 29900), ("双面羊毛大衣", 49900), ("真丝衬衫", 19900)),
    },
    "美妆": {
        "traffic_driver": (("氨基酸洗面奶", 990), ("补水面膜5片装", 1990)),
        "giveaway": (("小样旅行装四件套", 100), ("化妆刷一支", 990)),
        "hero": (("玻尿酸精华液30ml", 6900), ("持妆粉底液", 8900), ("口红三支礼盒", 9900)),
        "profit": (("抗老面霜50g", 32900), ("香水礼盒", 45900), ("眼部精华", 25900)),
    },
    "食品": {
        "traffic_driver": (("手撕面包1kg整箱", 990), ("螺蛳粉3袋装", 1990), ("辣条大礼包", 990)),
        "giveaway": (("坚果尝鲜装", 100), ("挂耳咖啡5包", 990)),
        "hero": (("每日坚果30包", 5990), ("云南小粒咖啡豆1kg", 6990), ("内蒙古牛肉干500g", 7990)),
        "profit": (("五常大米10kg", 12900), ("特级燕窝礼盒", 59900), ("有机茶叶礼盒", 29900)),
    },
    "家居": {
        "traffic_driver": (("原木抽纸24包", 1990), ("洗衣凝珠50颗", 990)),
        "giveaway": (("厨房抹布10条", 100), ("硅胶保鲜袋", 990)),
        "hero": (("麦饭石不粘锅", 8990), ("乳胶枕一对", 9990), ("四件套纯棉床品", 12900)),
        "profit": (("蚕丝被", 49900), ("智能扫地机器人", 129900), ("真空保温杯礼盒", 19900)),
    },
}

CATEGORIES: Final = tuple(PRODUCTS)

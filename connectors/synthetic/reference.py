"""Reference data the synthetic generator draws from: places, names, phone prefixes, shop categories, listed companies.

Plain data only. Codes follow the real scheme (GB/T 2260 administrative divisions,
CSI industry names) so generated records look right to a reader, but none of the
people, merchants or figures exist.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class City:
    province: str
    name: str
    short_name: str
    code: str  # first four digits of the division code: province (2) + prefecture (2)
    district_suffixes: tuple[str, ...]  # last two digits of the county-level codes generated in this city
    tier: int  # 1 = first-tier city ... 3; shifts the income distribution


def _districts(spec: str) -> tuple[str, ...]:
    return tuple(spec.split())


CITIES: tuple[City, ...] = (
    City("北京市", "北京市", "北京", "1101", _districts("01 02 05 06 07 08 09 11 12 13 14 15 16 17"), 1),
    City("天津市", "天津市", "天津", "1201", _districts("01 02 03 04 05 06 10 11 12 13"), 2),
    City("河北省", "石家庄市", "石家庄", "1301", _districts("02 04 05 07 08 09"), 3),
    City("河北省", "唐山市", "唐山", "1302", _districts("02 03 04 05 07"), 3),
    City("河北省", "保定市", "保定", "1306", _districts("02 06 07 08"), 3),
    City("山西省", "太原市", "太原", "1401", _districts("05 06 07 08 09 10"), 3),
    City("内蒙古自治区", "呼和浩特市", "呼和浩特", "1501", _districts("02 03 04 05"), 3),
    City("辽宁省", "沈阳市", "沈阳", "2101", _districts("02 03 04 05 06 11 12"), 2),
    City("辽宁省", "大连市", "大连", "2102", _districts("02 03 04 11 12 13"), 2),
    City("吉林省", "长春市", "长春", "2201", _districts("02 03 04 05 06"), 3),
    City("黑龙江省", "哈尔滨市", "哈尔滨", "2301", _districts("02 03 04 08 09 10"), 3),
    City("上海市", "上海市", "上海", "3101", _districts("01 04 05 06 07 09 10 12 13 14 15 16 17 18"), 1),
    City("江苏省", "南京市", "南京", "3201", _districts("02 04 05 06 11 13 14 15 16"), 2),
    City("江苏省", "无锡市", "无锡", "3202", _districts("05 06 11 13 14"), 2),
    City("江苏省", "苏州市", "苏州", "3205", _districts("05 06 07 08 09"), 2),
    City("浙江省", "杭州市", "杭州", "3301", _districts("02 05 06 08 09 10 11 12"), 2),
    City("浙江省", "宁波市", "宁波", "3302", _districts("03 05 06 11 12 13"), 2),
    City("浙江省", "温州市", "温州", "3303", _districts("02 03 04 05"), 3),
    City("安徽省", "合肥市", "合肥", "3401", _districts("02 03 04 11"), 3),
    City("福建省", "福州市", "福州", "3501", _districts("02 03 04 05 11"), 3),
    City("福建省", "厦门市", "厦门", "3502", _districts("03 05 06 11 12"), 2),
    City("江西省", "南昌市", "南昌", "3601", _districts("02 03 04 11 12"), 3),
    City("山东省", "济南市", "济南", "3701", _districts("02 03 04 05 12 13"), 2),
    City("山东省", "青岛市", "青岛", "3702", _districts("02 03 11 12 13 14"), 2),
    City("河南省", "郑州市", "郑州", "4101", _districts("02 03 04 05 06 08"), 2),
    City("河南省", "洛阳市", "洛阳", "4103", _districts("02 03 04 05 11"), 3),
    City("湖北省", "武汉市", "武汉", "4201", _districts("02 03 04 05 06 07 11 12 13"), 2),
    City("湖南省", "长沙市", "长沙", "4301", _districts("02 03 04 05 11 12"), 2),
    City("广东省", "广州市", "广州", "4401", _districts("03 04 05 06 11 12 13 14 15"), 1),
    City("广东省", "深圳市", "深圳", "4403", _districts("03 04 05 06 07 08 09 10 11"), 1),
    City("广东省", "佛山市", "佛山", "4406", _districts("04 05 06 07 08"), 2),
    City("广西壮族自治区", "南宁市", "南宁", "4501", _districts("02 03 05 07 08"), 3),
    City("海南省", "海口市", "海口", "4601", _districts("05 06 07 08"), 3),
    City("重庆市", "重庆市", "重庆", "5001", _districts("01 02 03 04 05 06 07 08 09 10 12"), 2),
    City("四川省", "成都市", "成都", "5101", _districts("04 05 06 07 08 12 13 14 15"), 2),
    City("四川省", "绵阳市", "绵阳", "5107", _districts("03 04"), 3),
    City("贵州省", "贵阳市", "贵阳", "5201", _districts("02 03 11 12 13"), 3),
    City("云南省", "昆明市", "昆明", "5301", _districts("02 03 11 12 14"), 3),
    City("西藏自治区", "拉萨市", "拉萨", "5401", _districts("02 03"), 3),
    City("陕西省", "西安市", "西安", "6101", _districts("02 03 04 11 12 13 14 15"), 2),
    City("甘肃省", "兰州市", "兰州", "6201", _districts("02 03 04 05"), 3),
    City("青海省", "西宁市", "西宁", "6301", _districts("02 03 04 05"), 3),
    City("宁夏回族自治区", "银川市", "银川", "6401", _districts("04 05 06"), 3),
    City("新疆维吾尔自治区", "乌鲁木齐市", "乌鲁木齐", "6501", _districts("02 03 04 05 06"), 3),
)

# Common surnames, roughly in order of frequency; the weights fall off with rank.
SURNAMES = tuple(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
# Characters for given names; a given name has one or two of them. Both lists have the same length.
GIVEN_NAME_CHARS = {
    "M": tuple("伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林峰建国志文博阳晨佳嘉子"),
    "F": tuple("芳娜敏静丽艳娟霞秀燕玲桂丹萍红玉兰婷雪琳颖慧倩洁晶璐欣怡梦雨佳嘉子晨思可雅月莉蕾"),
}
TWO_CHAR_GIVEN_NAME_SHARE = 0.7

# Mobile number prefixes of the three carriers, with rough shares.
PHONE_PREFIXES: tuple[tuple[str, float], ...] = tuple(
    (prefix, weight)
    for group, weight in (
        ("130 131 132 133 134 135 136 137 138 139", 3.0),
        ("150 151 152 153 155 156 157 158 159", 2.5),
        ("180 181 182 183 184 185 186 187 188 189", 2.5),
        ("145 147 166 173 175 176 177 178 191 198 199", 1.0),
    )
    for prefix in group.split()
)

INCOME_BANDS = ("<5k", "5k-10k", "10k-20k", "20k-50k", "50k+")
# Share of each income band (monthly income, CNY) by city tier.
INCOME_BAND_SHARES_BY_TIER = {
    1: (0.12, 0.30, 0.33, 0.18, 0.07),
    2: (0.22, 0.38, 0.27, 0.10, 0.03),
    3: (0.35, 0.40, 0.18, 0.06, 0.01),
}

# The ten level-1 sectors of the CSI industry classification.
CSI_INDUSTRIES = tuple("能源 原材料 工业 可选消费 主要消费 医药卫生 金融地产 信息技术 电信业务 公用事业".split())


@dataclass(frozen=True)
class Category:
    name: str
    csi_industry: str
    merchant_share: float  # share of merchants in this category
    median_amount_cny: float  # of a single purchase; amounts are log-normal around it
    amount_sigma: float
    channel_shares: tuple[float, float, float]  # online, mobile, pos
    shop_suffixes: tuple[str, ...]


CHANNELS = ("online", "mobile", "pos")

CATEGORIES: tuple[Category, ...] = (
    Category("餐饮", "可选消费", 0.22, 48.0, 0.65, (0.05, 0.55, 0.40), ("餐厅", "小馆", "面馆", "火锅")),
    Category("服装", "可选消费", 0.12, 220.0, 0.70, (0.45, 0.35, 0.20), ("服饰", "时装", "衣坊")),
    Category("3C数码", "信息技术", 0.06, 1600.0, 0.90, (0.55, 0.30, 0.15), ("数码", "电子", "通讯")),
    Category("家电", "可选消费", 0.05, 2300.0, 0.80, (0.50, 0.30, 0.20), ("电器", "家电城")),
    Category("美妆", "主要消费", 0.07, 260.0, 0.70, (0.50, 0.40, 0.10), ("美妆", "化妆品")),
    Category("食品饮料", "主要消费", 0.18, 62.0, 0.75, (0.25, 0.45, 0.30), ("超市", "食品", "便利店")),
    Category("医药", "医药卫生", 0.06, 95.0, 0.80, (0.20, 0.40, 0.40), ("大药房", "医药", "诊所")),
    Category("旅游", "可选消费", 0.03, 1500.0, 0.90, (0.60, 0.35, 0.05), ("旅行社", "国旅", "酒店")),
    Category("汽车", "可选消费", 0.03, 900.0, 1.10, (0.15, 0.35, 0.50), ("汽车服务", "汽修", "车行")),
    Category("家居", "可选消费", 0.04, 650.0, 0.90, (0.40, 0.30, 0.30), ("家居", "家具", "建材")),
    Category("母婴", "主要消费", 0.03, 180.0, 0.75, (0.45, 0.40, 0.15), ("母婴", "童装")),
    Category("教育", "可选消费", 0.02, 1200.0, 0.85, (0.40, 0.45, 0.15), ("教育", "培训", "书店")),
    Category("通信缴费", "电信业务", 0.02, 80.0, 0.50, (0.40, 0.55, 0.05), ("营业厅", "通信")),
    Category("生活缴费", "公用事业", 0.02, 150.0, 0.60, (0.35, 0.60, 0.05), ("缴费中心", "水电燃气")),
    Category("加油", "能源", 0.02, 300.0, 0.35, (0.05, 0.35, 0.60), ("加油站", "石化")),
    Category("保险理财", "金融地产", 0.01, 2000.0, 1.00, (0.40, 0.55, 0.05), ("财富", "保险代理")),
    Category("五金建材", "原材料", 0.01, 400.0, 0.90, (0.25, 0.25, 0.50), ("五金", "建材")),
    Category("物流快递", "工业", 0.01, 22.0, 0.50, (0.40, 0.50, 0.10), ("快递", "物流")),
)

# The middle of a merchant's name: a trade name of the kind shops use.
TRADE_NAMES = tuple(
    "鑫隆 华美 恒通 金福 万家 宏达 佳和 永盛 瑞丰 兴旺 汇源 聚德 福满 祥和 新世纪 东方 大众 利民 百顺 旺角 "
    "盛世 嘉禾 天成 悦享 优品 好又多 一品 富源 和记 同心".split()
)


@dataclass(frozen=True)
class Company:
    ticker: str
    name: str
    csi_industry: str


# Well-known listed companies first; the generator fills any further rows with invented ones.
LISTED_COMPANIES: tuple[Company, ...] = tuple(
    Company(ticker, name, industry)
    for ticker, name, industry in (
        ("600519.SH", "贵州茅台", "主要消费"),
        ("000858.SZ", "五粮液", "主要消费"),
        ("000568.SZ", "泸州老窖", "主要消费"),
        ("600809.SH", "山西汾酒", "主要消费"),
        ("002304.SZ", "洋河股份", "主要消费"),
        ("600887.SH", "伊利股份", "主要消费"),
        ("603288.SH", "海天味业", "主要消费"),
        ("002714.SZ", "牧原股份", "主要消费"),
        ("000333.SZ", "美的集团", "可选消费"),
        ("000651.SZ", "格力电器", "可选消费"),
        ("600690.SH", "海尔智家", "可选消费"),
        ("002594.SZ", "比亚迪", "可选消费"),
        ("601633.SH", "长城汽车", "可选消费"),
        ("600104.SH", "上汽集团", "可选消费"),
        ("601888.SH", "中国中免", "可选消费"),
        ("600276.SH", "恒瑞医药", "医药卫生"),
        ("300760.SZ", "迈瑞医疗", "医药卫生"),
        ("300015.SZ", "爱尔眼科", "医药卫生"),
        ("600436.SH", "片仔癀", "医药卫生"),
        ("000001.SZ", "平安银行", "金融地产"),
        ("601318.SH", "中国平安", "金融地产"),
        ("600036.SH", "招商银行", "金融地产"),
        ("601398.SH", "工商银行", "金融地产"),
        ("601288.SH", "农业银行", "金融地产"),
        ("601988.SH", "中国银行", "金融地产"),
        ("601166.SH", "兴业银行", "金融地产"),
        ("600030.SH", "中信证券", "金融地产"),
        ("300059.SZ", "东方财富", "金融地产"),
        ("000002.SZ", "万科A", "金融地产"),
        ("002415.SZ", "海康威视", "信息技术"),
        ("000725.SZ", "京东方A", "信息技术"),
        ("002475.SZ", "立讯精密", "信息技术"),
        ("603986.SH", "兆易创新", "信息技术"),
        ("688981.SH", "中芯国际", "信息技术"),
        ("000063.SZ", "中兴通讯", "信息技术"),
        ("600941.SH", "中国移动", "电信业务"),
        ("601728.SH", "中国电信", "电信业务"),
        ("600050.SH", "中国联通", "电信业务"),
        ("300750.SZ", "宁德时代", "工业"),
        ("601012.SH", "隆基绿能", "工业"),
        ("601668.SH", "中国建筑", "工业"),
        ("600031.SH", "三一重工", "工业"),
        ("601766.SH", "中国中车", "工业"),
        ("600309.SH", "万华化学", "原材料"),
        ("601899.SH", "紫金矿业", "原材料"),
        ("600019.SH", "宝钢股份", "原材料"),
        ("600585.SH", "海螺水泥", "原材料"),
        ("601857.SH", "中国石油", "能源"),
        ("600028.SH", "中国石化", "能源"),
        ("601088.SH", "中国神华", "能源"),
        ("600900.SH", "长江电力", "公用事业"),
    )
)
# Invented companies take codes from these blocks, which hold none of the listed ones above.
INVENTED_TICKER_BLOCKS = (("SSE", 605000, "SH"), ("SZSE", 301000, "SZ"))
INVENTED_TICKER_BLOCK_SIZE = 1000
COMPANY_NAME_PREFIXES = tuple("华 中 国 东 南 海 金 新 天 长 宏 恒 远 安 嘉 瑞 鼎 润 晨 博".split())
COMPANY_NAME_MIDDLES = tuple("信 达 泰 盛 通 科 源 成 光 兴 鑫 创 联 和 锐".split())
COMPANY_NAME_SUFFIX_BY_INDUSTRY = {
    "能源": "能源",
    "原材料": "材料",
    "工业": "装备",
    "可选消费": "消费",
    "主要消费": "食品",
    "医药卫生": "医药",
    "金融地产": "控股",
    "信息技术": "科技",
    "电信业务": "通信",
    "公用事业": "环保",
}

# Spring Festival (Lunar New Year's Day), from the published calendar.
SPRING_FESTIVALS = tuple(
    dt.date.fromisoformat(day)
    for day in (
        "2015-02-19 2016-02-08 2017-01-28 2018-02-16 2019-02-05 2020-01-25 2021-02-12 2022-02-01 "
        "2023-01-22 2024-02-10 2025-01-29 2026-02-17 2027-02-06 2028-01-26 2029-02-13 2030-02-03"
    ).split()
)

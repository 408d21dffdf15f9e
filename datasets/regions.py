"""Reference data for region coarsening: mainland China's 31 provinces, their 7 regions, and prefecture-level cities.

A place name (city or province, with or without its 市/省/自治区 suffix) maps to
its province's official name and its region. `region_names()` is the lookup the
`region` generalization rule joins against.
"""

from __future__ import annotations

import pyarrow as pa

# Official province-level name, short name, region (华北/东北/华东/华中/华南/西南/西北), prefecture-level cities
# (space-separated; the four municipalities have none).
PROVINCES: tuple[tuple[str, str, str, str], ...] = (
    ("北京市", "北京", "华北", ""),
    ("天津市", "天津", "华北", ""),
    ("河北省", "河北", "华北", "石家庄 唐山 秦皇岛 邯郸 邢台 保定 张家口 承德 沧州 廊坊 衡水"),
    ("山西省", "山西", "华北", "太原 大同 阳泉 长治 晋城 朔州 晋中 运城 忻州 临汾 吕梁"),
    ("内蒙古自治区", "内蒙古", "华北", "呼和浩特 包头 乌海 赤峰 通辽 鄂尔多斯 呼伦贝尔 巴彦淖尔 乌兰察布"),
    ("辽宁省", "辽宁", "东北", "沈阳 大连 鞍山 抚顺 本溪 丹东 锦州 营口 阜新 辽阳 盘锦 铁岭 朝阳 葫芦岛"),
    ("吉林省", "吉林", "东北", "长春 吉林 四平 辽源 通化 白山 松原 白城 延边"),
    ("黑龙江省", "黑龙江", "东北", "哈尔滨 齐齐哈尔 鸡西 鹤岗 双鸭山 大庆 伊春 佳木斯 七台河 牡丹江 黑河 绥化"),
    ("上海市", "上海", "华东", ""),
    ("江苏省", "江苏", "华东", "南京 无锡 徐州 常州 苏州 南通 连云港 淮安 盐城 扬州 镇江 泰州 宿迁"),
    ("浙江省", "浙江", "华东", "杭州 宁波 温州 嘉兴 湖州 绍兴 金华 衢州 舟山 台州 丽水"),
    ("安徽省", "安徽", "华东", "合肥 芜湖 蚌埠 淮南 马鞍山 淮北 铜陵 安庆 黄山 滁州 阜阳 宿州 六安 亳州 池州 宣城"),
    ("福建省", "福建", "华东", "福州 厦门 莆田 三明 泉州 漳州 南平 龙岩 宁德"),
    ("江西省", "江西", "华东", "南昌 景德镇 萍乡 九江 新余 鹰潭 赣州 吉安 宜春 抚州 上饶"),
    ("山东省", "山东", "华东", "济南 青岛 淄博 枣庄 东营 烟台 潍坊 济宁 泰安 威海 日照 临沂 德州 聊城 滨州 菏泽"),
    (
        "河南省",
        "河南",
        "华中",
        "郑州 开封 洛阳 平顶山 安阳 鹤壁 新乡 焦作 濮阳 许昌 漯河 三门峡 南阳 商丘 信阳 周口 驻马店",
    ),
    ("湖北省", "湖北", "华中", "武汉 黄石 十堰 宜昌 襄阳 鄂州 荆门 孝感 荆州 黄冈 咸宁 随州"),
    ("湖南省", "湖南", "华中", "长沙 株洲 湘潭 衡阳 邵阳 岳阳 常德 张家界 益阳 郴州 永州 怀化 娄底"),
    (
        "广东省",
        "广东",
        "华南",
        "广州 韶关 深圳 珠海 汕头 佛山 江门 湛江 茂名 肇庆 惠州 梅州 汕尾 河源 阳江 清远 东莞 中山 潮州 揭阳 云浮",
    ),
    ("广西壮族自治区", "广西", "华南", "南宁 柳州 桂林 梧州 北海 防城港 钦州 贵港 玉林 百色 贺州 河池 来宾 崇左"),
    ("海南省", "海南", "华南", "海口 三亚 三沙 儋州"),
    ("重庆市", "重庆", "西南", ""),
    (
        "四川省",
        "四川",
        "西南",
        "成都 自贡 攀枝花 泸州 德阳 绵阳 广元 遂宁 内江 乐山 南充 眉山 宜宾 广安 达州 雅安 巴中 资阳",
    ),
    ("贵州省", "贵州", "西南", "贵阳 六盘水 遵义 安顺 毕节 铜仁"),
    ("云南省", "云南", "西南", "昆明 曲靖 玉溪 保山 昭通 丽江 普洱 临沧"),
    ("西藏自治区", "西藏", "西南", "拉萨 日喀则 昌都 林芝 山南 那曲"),
    ("陕西省", "陕西", "西北", "西安 铜川 宝鸡 咸阳 渭南 延安 汉中 榆林 安康 商洛"),
    ("甘肃省", "甘肃", "西北", "兰州 嘉峪关 金昌 白银 天水 武威 张掖 平凉 酒泉 庆阳 定西 陇南"),
    ("青海省", "青海", "西北", "西宁 海东"),
    ("宁夏回族自治区", "宁夏", "西北", "银川 石嘴山 吴忠 固原 中卫"),
    ("新疆维吾尔自治区", "新疆", "西北", "乌鲁木齐 克拉玛依 吐鲁番 哈密"),
)

REGIONS = ("华北", "东北", "华东", "华中", "华南", "西南", "西北")


def region_names() -> pa.Table:
    """Every accepted spelling of a place (name) with its province's official name and its region; names are unique."""
    rows: dict[str, tuple[str, str]] = {}
    for official, short, region, cities in PROVINCES:
        for city in cities.split():
            rows.setdefault(city, (official, region))
            rows.setdefault(f"{city}市", (official, region))
        # Province spellings win over a same-named city (吉林 is both): both resolve to the same province anyway.
        for spelling in {official, short, f"{short}市", f"{short}省"}:
            rows[spelling] = (official, region)
    names = sorted(rows)
    return pa.table(
        {
            "name": names,
            "province": [rows[n][0] for n in names],
            "region": [rows[n][1] for n in names],
        }
    )

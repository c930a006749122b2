"""A realistic demo shop, generated from a seed: customers, catalogue, stock, a year of orders
and a day of live webhooks, for `crm demo`.

Pure and deterministic: the same `seed`, sizes and `today` give the same shop and the same
bytes on disk (`write_files`). No AWS, no network, standard library only; the province table
and the warehouses come from the package's data (`crm/data/*.json`, read through
`crm.domain.inventory`).

What the files are:

* `customers.csv`: Shopify's customer export (UTF-8 with BOM), with ids, phones and zips
  protected by a leading apostrophe as Shopify writes them, and a few bad rows of known kinds
  mixed in (`DemoShop.bad_customer_rows`: data row number, as `import_files.Row.number` counts
  it, -> kind), so the import report can be checked.
* `orders.csv`: Shopify's order export (UTF-8 with BOM), one row per line item; the order's
  own columns only on its first row.
* `inventory.csv`: `sku,warehouse,on_hand,safety_stock`, one row per SKU and warehouse.

The history ends the day before `today`; `live_events` are today's Shopify webhooks
(`orders/create`, then `orders/paid` for most), in the order they would arrive.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import random
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from crm.domain.import_files import BROKEN_QUOTING, WRONG_COLUMN_COUNT
from crm.domain.inventory import (
    Region,
    StockLevel,
    Warehouse,
    china_regions,
    default_warehouses_json,
    load_warehouses,
)
from crm.domain.order_imports import SHOPIFY_EXPORT_COLUMNS, SHOPIFY_LINE_ITEM_COLUMNS

CURRENCY = "CNY"
CHINA_TIME = timezone(timedelta(hours=8))
LIVE_ORDERS = 30
FIRST_ORDER_NUMBER = 1001
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")  # RFC 2606: never delivered

# Kinds of the bad customer rows: the importer's own words (a row problem of `read_rows`, or
# the `issue` of the `ValidationFailed` that `customer_row` raises).
INVALID_EMAIL = "invalid_email"
INVALID_PHONE = "invalid_phone"
NO_IDENTITY = "no_identity"
BAD_ROW_KINDS = (INVALID_EMAIL, INVALID_PHONE, WRONG_COLUMN_COUNT, NO_IDENTITY, BROKEN_QUOTING)

CUSTOMER_COLUMNS = (
    "Customer ID",
    "First Name",
    "Last Name",
    "Email",
    "Accepts Email Marketing",
    "Default Address Company",
    "Default Address Address1",
    "Default Address Address2",
    "Default Address City",
    "Default Address Province Code",
    "Default Address Country Code",
    "Default Address Zip",
    "Default Address Phone",
    "Phone",
    "Accepts SMS Marketing",
    "Total Spent",
    "Total Orders",
    "Note",
    "Tax Exempt",
    "Tags",
)
# Shopify's order export header (the importer's one copy), less the columns the demo leaves empty
# on every row and so does not write: the five tax lines and the ones Shopify appended later.
DEMO_OMITTED_ORDER_COLUMNS = frozenset(
    {
        *(f"Tax {n} {part}" for n in range(1, 6) for part in ("Name", "Value")),
        "Receipt Number",
        "Duties",
        "Billing Province Name",
        "Shipping Province Name",
        "Payment ID",
        "Payment Terms Name",
        "Next Payment Due At",
        "Payment References",
    }
)
ORDER_COLUMNS = tuple(c for c in SHOPIFY_EXPORT_COLUMNS if c not in DEMO_OMITTED_ORDER_COLUMNS)
# Filled on every row of an order; every other column only on the order's first row.
ORDER_LINE_COLUMNS = frozenset({"Name", "Email", *SHOPIFY_LINE_ITEM_COLUMNS})
INVENTORY_COLUMNS = ("sku", "warehouse", "on_hand", "safety_stock")
PAID_STATUSES = ("paid", "partially_refunded", "refunded")

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


# --- The shop's data ------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    sku: str
    title_zh: str
    title_en: str
    price: Decimal  # CNY
    compare_at_price: Decimal | None
    vendor: str
    product_id: int
    variant_id: int
    grams: int
    popularity: float  # relative weight in baskets

    @property
    def title(self) -> str:
        """The line item name, both languages: `西湖龙井 250g | West Lake Longjing 250g`."""
        return f"{self.title_zh} | {self.title_en}"


@dataclass(frozen=True)
class DemoAddress:
    first_name: str
    last_name: str
    name: str  # as printed on a parcel: `王芳`, `Emma Wang`
    company: str
    address1: str
    address2: str
    city: str
    province_code: str  # Shopify's, as in cn_regions.json: "SH", "GD", "YZ"
    province: str  # the English name: "Guangdong"
    country_code: str
    zip: str
    phone: str | None  # E.164
    latitude: float
    longitude: float


@dataclass(frozen=True)
class DemoCustomer:
    index: int  # position in `shop.customers + shop.new_customers`
    customer_id: int  # Shopify's customer id
    first_name: str  # the given name (`芳`)
    last_name: str  # the family name (`王`, `欧阳`)
    english_name: bool
    email: str | None
    phone: str | None  # E.164, `+8613812345678`
    birthday: date | None
    locale: str
    address: DemoAddress
    accepts_email: bool
    accepts_sms: bool
    tags: tuple[str, ...]
    note: str
    tax_exempt: bool
    # From the order history (`shop.orders`): every order, and what was paid minus refunds.
    orders_count: int = 0
    total_spent: Decimal = ZERO


@dataclass(frozen=True)
class DemoLine:
    line_id: int
    sku: str
    title: str
    quantity: int
    price: Decimal  # unit price before discounts
    compare_at_price: Decimal | None
    discount: Decimal  # this line's share of the order's discount
    vendor: str
    product_id: int
    variant_id: int

    @property
    def amount(self) -> Decimal:
        return self.price * self.quantity


@dataclass(frozen=True)
class DemoOrder:
    order_id: int  # Shopify's order id
    number: int  # 1001 ...; the name is "#1001"
    customer_index: int  # `shop.customer(index)`
    customer_id: int
    email: str | None
    phone: str | None
    accepts_marketing: bool
    created_at: datetime  # China time (+08:00)
    financial_status: str  # paid, partially_refunded, refunded, pending, voided
    fulfillment_status: str  # fulfilled, unfulfilled
    paid_at: datetime | None
    fulfilled_at: datetime | None
    cancelled_at: datetime | None
    lines: tuple[DemoLine, ...]
    discount_code: str
    discount: Decimal
    subtotal: Decimal  # sum(quantity * price) - discount
    shipping: Decimal
    shipping_method: str
    total: Decimal  # subtotal + shipping (taxes are included in prices)
    refunded: Decimal
    address: DemoAddress  # billing and shipping
    payment_method: str
    note: str
    tags: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"#{self.number}"

    @property
    def revenue(self) -> Decimal:
        """What the shop kept: the total less refunds, for an order that was paid."""
        if self.financial_status not in PAID_STATUSES:
            return ZERO
        return self.total - self.refunded


@dataclass(frozen=True)
class DemoShop:
    """Everything generated. Collections are tuples; the two dicts map a data row number of
    `customers.csv` (header is row 0, as `import_files.Row.number` counts) to the kind of bad
    row (one of `BAD_ROW_KINDS`) and to its raw text."""

    seed: int
    today: date
    products: tuple[Product, ...]
    warehouses: tuple[Warehouse, ...]
    stock: tuple[StockLevel, ...]
    customers: tuple[DemoCustomer, ...]  # in customers.csv, in this order
    orders: tuple[DemoOrder, ...]  # the history, oldest first: orders.csv
    new_customers: tuple[DemoCustomer, ...]  # today's buyers not in customers.csv
    live_orders: tuple[DemoOrder, ...]  # today's orders, as of their last event
    live_events: tuple[tuple[str, dict[str, Any]], ...]  # (topic, Shopify payload)
    bad_customer_rows: dict[int, str]
    bad_customer_lines: dict[int, str]

    def customer(self, index: int) -> DemoCustomer:
        """A customer by `DemoCustomer.index` / `DemoOrder.customer_index`."""
        if index < len(self.customers):
            return self.customers[index]
        return self.new_customers[index - len(self.customers)]

    def product(self, sku: str) -> Product:
        for product in self.products:
            if product.sku == sku:
                return product
        raise KeyError(sku)


# --- Reference data -------------------------------------------------------------------------

# (sku, Chinese title, English title, price, compare-at price, vendor, popularity, grams)
_CATALOGUE: tuple[tuple[str, str, str, str, str, str, float, int], ...] = (
    ("TEA-LJ-250", "西湖龙井 250g", "West Lake Longjing 250g", "268.00", "298.00", "WL", 9, 300),
    ("TEA-LJ-100", "西湖龙井 100g", "West Lake Longjing 100g", "118.00", "", "WL", 12, 130),
    ("TEA-BLC-100", "洞庭碧螺春 100g", "Dongting Biluochun 100g", "98.00", "", "WL", 7, 130),
    ("TEA-HS-100", "黄山毛峰 100g", "Huangshan Maofeng 100g", "78.00", "", "WL", 5, 130),
    ("TEA-TGY-250", "安溪铁观音 250g", "Anxi Tieguanyin 250g", "158.00", "", "WY", 8, 300),
    ("TEA-DHP-100", "武夷大红袍 100g", "Wuyi Da Hong Pao 100g", "188.00", "", "WY", 7, 130),
    ("TEA-ZSXZ-100", "正山小种 100g", "Lapsang Souchong 100g", "108.00", "", "WY", 6, 130),
    ("TEA-DC-100", "凤凰单丛 100g", "Phoenix Dancong 100g", "138.00", "", "WY", 4, 130),
    ("TEA-QM-100", "祁门红茶 100g", "Keemun Black Tea 100g", "88.00", "", "WY", 6, 130),
    ("TEA-PE-357", "云南普洱生茶饼 357g", "Yunnan Raw Pu'er Cake 357g", "228.00", "", "YN", 5, 400),
    ("TEA-PE-100", "普洱熟茶 100g", "Ripe Pu'er 100g", "68.00", "", "YN", 6, 130),
    ("TEA-DH-100", "滇红金芽 100g", "Dianhong Golden Buds 100g", "96.00", "", "YN", 4, 130),
    ("TEA-BMD-100", "福鼎白牡丹 100g", "Fuding White Peony 100g", "128.00", "", "LK", 5, 130),
    ("TEA-MLH-100", "茉莉花茶 100g", "Jasmine Green Tea 100g", "58.00", "68.00", "LK", 10, 130),
    ("TEA-JH-50", "杭白菊 50g", "Hangzhou Chrysanthemum 50g", "35.00", "", "WL", 6, 70),
    ("TEA-SAMPLER", "名茶品鉴装 8种", "Tea Tasting Set of 8", "99.00", "129.00", "LK", 9, 250),
    ("MUG-CER-01", "景德镇陶瓷马克杯", "Jingdezhen Ceramic Mug", "69.00", "", "JD", 7, 380),
    ("MUG-CER-02", "青瓷马克杯", "Celadon Mug", "79.00", "", "JD", 4, 380),
    ("CUP-GLS-01", "双层玻璃杯", "Double-Wall Glass Cup", "59.00", "", "LK", 6, 260),
    ("CUP-SET-6", "品茗杯 6只装", "Tasting Cups, Set of 6", "79.00", "", "JD", 5, 420),
    ("POT-YX-01", "宜兴紫砂壶 西施", "Yixing Clay Teapot, Xishi", "680.00", "780.00", "YX", 2, 450),
    ("POT-YX-02", "宜兴紫砂壶 石瓢", "Yixing Clay Teapot, Shipiao", "880.00", "", "YX", 1, 480),
    ("POT-GLS-01", "耐热玻璃茶壶", "Heat-Resistant Glass Teapot", "129.00", "", "LK", 4, 600),
    ("GW-SET-01", "功夫茶具套装", "Gongfu Tea Set", "398.00", "458.00", "JD", 3, 2200),
    ("GW-GAIWAN-01", "白瓷盖碗", "White Porcelain Gaiwan", "89.00", "", "JD", 5, 350),
    ("GW-GAIWAN-02", "青花盖碗", "Blue-and-White Gaiwan", "129.00", "", "JD", 3, 350),
    ("GW-TRAY-01", "竹制茶盘", "Bamboo Tea Tray", "239.00", "", "LK", 2, 1800),
    ("GW-PITCHER", "玻璃公道杯", "Glass Fairness Pitcher", "49.00", "", "LK", 4, 300),
    ("GW-STRAINER", "不锈钢茶滤", "Tea Strainer", "25.00", "", "LK", 5, 80),
    ("GW-KETTLE-01", "电陶炉烧水壶", "Electric Tea Kettle", "329.00", "", "LK", 2, 2600),
    ("ACC-TIN-01", "锡制茶叶罐", "Pewter Tea Caddy", "159.00", "", "LK", 2, 500),
    ("ACC-CAN-01", "马口铁茶叶罐", "Tin-Plate Tea Caddy", "39.00", "", "LK", 6, 150),
    ("ACC-TOOLS-6", "茶道六君子", "Tea Ceremony Tool Set, 6 Pieces", "69.00", "", "LK", 3, 400),
    ("ACC-PET-01", "茶宠 金蟾", "Tea Pet, Golden Toad", "45.00", "", "YX", 3, 150),
    ("ACC-TRAVEL", "便携旅行茶具", "Travel Tea Kit", "168.00", "", "LK", 3, 700),
    ("SNK-NUT-500", "每日坚果 500g", "Daily Mixed Nuts 500g", "79.00", "", "XY", 6, 550),
    ("SNK-DATE-500", "新疆若羌红枣 500g", "Xinjiang Red Dates 500g", "49.00", "", "XY", 5, 550),
    ("SNK-GOJI-250", "宁夏枸杞 250g", "Ningxia Goji Berries 250g", "45.00", "", "XY", 4, 280),
    ("SNK-MOON-6", "中秋月饼礼盒 6枚", "Mid-Autumn Mooncake Box of 6", "188.00", "", "LK", 0, 900),
    ("GIFT-NY-01", "新春茶礼盒", "New Year Tea Gift Box", "498.00", "", "LK", 0, 1500),
)
_VENDORS = {
    "WL": "西湖茶园 West Lake Tea Garden",
    "WY": "武夷山茶厂 Wuyi Tea Works",
    "YN": "云南茶马 Yunnan Tea Horse",
    "JD": "景德镇窑 Jingdezhen Kiln",
    "YX": "宜兴陶坊 Yixing Pottery",
    "XY": "西域果园 Western Orchard",
    "LK": "叶与窑 Leaf & Kiln",
}
# SKUs sold only (or mostly) in a season: (first month, first day), (last month, last day),
# weight in season. Spring's new tea (明前茶) makes Longjing and Biluochun sell more.
_SEASONS: dict[str, tuple[tuple[int, int], tuple[int, int], float]] = {
    "SNK-MOON-6": ((8, 1), (9, 30), 14.0),
    "GIFT-NY-01": ((12, 10), (2, 15), 8.0),
    "TEA-LJ-250": ((3, 20), (5, 31), 18.0),
    "TEA-LJ-100": ((3, 20), (5, 31), 22.0),
    "TEA-BLC-100": ((3, 20), (5, 31), 14.0),
}

# (family name, pinyin, weight): the most common family names, and a few compound ones.
_FAMILY_NAMES: tuple[tuple[str, str, float], ...] = (
    ("王", "wang", 7.2),
    ("李", "li", 7.1),
    ("张", "zhang", 6.8),
    ("刘", "liu", 5.4),
    ("陈", "chen", 4.6),
    ("杨", "yang", 3.1),
    ("黄", "huang", 2.4),
    ("赵", "zhao", 2.3),
    ("吴", "wu", 2.1),
    ("周", "zhou", 2.1),
    ("徐", "xu", 1.7),
    ("孙", "sun", 1.5),
    ("马", "ma", 1.5),
    ("朱", "zhu", 1.4),
    ("胡", "hu", 1.3),
    ("郭", "guo", 1.2),
    ("何", "he", 1.2),
    ("林", "lin", 1.1),
    ("罗", "luo", 1.0),
    ("高", "gao", 1.0),
    ("郑", "zheng", 0.9),
    ("梁", "liang", 0.9),
    ("谢", "xie", 0.8),
    ("宋", "song", 0.7),
    ("唐", "tang", 0.7),
    ("许", "xu", 0.7),
    ("韩", "han", 0.6),
    ("冯", "feng", 0.6),
    ("邓", "deng", 0.6),
    ("曹", "cao", 0.6),
    ("彭", "peng", 0.5),
    ("曾", "zeng", 0.5),
    ("萧", "xiao", 0.5),
    ("田", "tian", 0.5),
    ("董", "dong", 0.5),
    ("潘", "pan", 0.4),
    ("袁", "yuan", 0.4),
    ("蔡", "cai", 0.4),
    ("蒋", "jiang", 0.4),
    ("余", "yu", 0.4),
    ("叶", "ye", 0.4),
    ("程", "cheng", 0.4),
    ("苏", "su", 0.3),
    ("吕", "lv", 0.3),
    ("沈", "shen", 0.3),
    ("钟", "zhong", 0.3),
    ("陆", "lu", 0.3),
    ("欧阳", "ouyang", 0.1),
    ("司马", "sima", 0.03),
    ("上官", "shangguan", 0.03),
)
_GIVEN_NAMES: tuple[tuple[str, str], ...] = (
    ("芳", "fang"),
    ("伟", "wei"),
    ("敏", "min"),
    ("静", "jing"),
    ("丽", "li"),
    ("强", "qiang"),
    ("磊", "lei"),
    ("军", "jun"),
    ("洋", "yang"),
    ("勇", "yong"),
    ("艳", "yan"),
    ("杰", "jie"),
    ("娟", "juan"),
    ("涛", "tao"),
    ("明", "ming"),
    ("超", "chao"),
    ("霞", "xia"),
    ("平", "ping"),
    ("刚", "gang"),
    ("秀英", "xiuying"),
    ("桂英", "guiying"),
    ("建国", "jianguo"),
    ("海燕", "haiyan"),
    ("晓明", "xiaoming"),
    ("子涵", "zihan"),
    ("欣怡", "xinyi"),
    ("梓轩", "zixuan"),
    ("浩然", "haoran"),
    ("雨桐", "yutong"),
    ("宇轩", "yuxuan"),
    ("思远", "siyuan"),
    ("佳怡", "jiayi"),
    ("俊杰", "junjie"),
    ("文博", "wenbo"),
    ("一诺", "yinuo"),
    ("诗涵", "shihan"),
    ("婷婷", "tingting"),
    ("志强", "zhiqiang"),
    ("丽娜", "lina"),
    ("晨", "chen"),
)
_ENGLISH_GIVEN = (
    "Emma",
    "Olivia",
    "Sophia",
    "Grace",
    "Lily",
    "Chloe",
    "Amy",
    "Vivian",
    "Cindy",
    "Jessica",
    "Alice",
    "Helen",
    "Ivy",
    "Lucy",
    "Kevin",
    "Jason",
    "David",
    "Michael",
    "Daniel",
    "Eric",
    "Leo",
    "Jack",
    "Tony",
    "Frank",
    "Ryan",
    "Peter",
)
_ENGLISH_FAMILY = (
    "Smith",
    "Johnson",
    "Brown",
    "Taylor",
    "Wilson",
    "Miller",
    "Davies",
    "Evans",
    "Walker",
    "Wright",
    "Clarke",
    "Green",
    "Martin",
    "O'Brien",
    "Nguyen",
    "Schmidt",
)
# Cities (Chinese, English) of each mainland province code of cn_regions.json.
_CITIES: dict[str, tuple[tuple[str, str], ...]] = {
    "AH": (("合肥", "Hefei"), ("芜湖", "Wuhu")),
    "BJ": (("北京", "Beijing"),),
    "CQ": (("重庆", "Chongqing"),),
    "FJ": (("福州", "Fuzhou"), ("厦门", "Xiamen"), ("泉州", "Quanzhou")),
    "GS": (("兰州", "Lanzhou"),),
    "GD": (("广州", "Guangzhou"), ("深圳", "Shenzhen"), ("东莞", "Dongguan"), ("佛山", "Foshan")),
    "GX": (("南宁", "Nanning"), ("桂林", "Guilin")),
    "GZ": (("贵阳", "Guiyang"),),
    "HI": (("海口", "Haikou"), ("三亚", "Sanya")),
    "HE": (("石家庄", "Shijiazhuang"), ("保定", "Baoding")),
    "HL": (("哈尔滨", "Harbin"),),
    "HA": (("郑州", "Zhengzhou"), ("洛阳", "Luoyang")),
    "HB": (("武汉", "Wuhan"), ("宜昌", "Yichang")),
    "HN": (("长沙", "Changsha"),),
    "NM": (("呼和浩特", "Hohhot"),),
    "JS": (("南京", "Nanjing"), ("苏州", "Suzhou"), ("无锡", "Wuxi")),
    "JX": (("南昌", "Nanchang"),),
    "JL": (("长春", "Changchun"),),
    "LN": (("沈阳", "Shenyang"), ("大连", "Dalian")),
    "NX": (("银川", "Yinchuan"),),
    "QH": (("西宁", "Xining"),),
    "SN": (("西安", "Xi'an"),),
    "SD": (("济南", "Jinan"), ("青岛", "Qingdao")),
    "SH": (("上海", "Shanghai"),),
    "SX": (("太原", "Taiyuan"),),
    "SC": (("成都", "Chengdu"), ("绵阳", "Mianyang")),
    "TJ": (("天津", "Tianjin"),),
    "XJ": (("乌鲁木齐", "Urumqi"),),
    "YZ": (("拉萨", "Lhasa"),),
    "YN": (("昆明", "Kunming"), ("大理", "Dali")),
    "ZJ": (("杭州", "Hangzhou"), ("宁波", "Ningbo"), ("温州", "Wenzhou")),
}
# Where online shoppers are: relative weights of the province codes (others weigh 1).
_PROVINCE_WEIGHTS = {
    "GD": 14,
    "ZJ": 11,
    "JS": 10,
    "SH": 10,
    "BJ": 8,
    "SD": 5,
    "FJ": 5,
    "SC": 5,
    "HB": 4,
    "HA": 3,
    "HN": 3,
    "AH": 3,
    "TJ": 3,
    "CQ": 3,
    "LN": 2,
    "HE": 2,
    "SN": 2,
    "JX": 2,
    "GX": 2,
    "YN": 2,
    "YZ": 0.2,
    "QH": 0.3,
    "NX": 0.4,
}
_REMOTE = frozenset({"XJ", "YZ", "QH", "NM", "GS", "NX"})
_STREETS = (
    ("人民路", "Renmin Road"),
    ("解放路", "Jiefang Road"),
    ("中山路", "Zhongshan Road"),
    ("建设路", "Jianshe Road"),
    ("和平路", "Heping Road"),
    ("长江路", "Changjiang Road"),
    ("文化路", "Wenhua Road"),
    ("新华路", "Xinhua Road"),
    ("延安路", "Yan'an Road"),
    ("学府路", "Xuefu Road"),
    ("滨江大道", "Binjiang Avenue"),
    ("科技园路", "Science Park Road"),
    ("世纪大道", "Century Avenue"),
    ("东风路", "Dongfeng Road"),
    ("花园街", "Huayuan Street"),
    ("光明路", "Guangming Road"),
)
_COMPANY_WORDS = (
    ("鑫源", "Xinyuan"),
    ("恒通", "Hengtong"),
    ("嘉禾", "Jiahe"),
    ("华盛", "Huasheng"),
    ("博雅", "Boya"),
    ("明德", "Mingde"),
)
_COMPANY_KINDS = (("贸易", "Trading"), ("科技", "Technology"), ("文化", "Culture"), ("茶业", "Tea"))
_NOTES = (
    "喜欢龙井\uff0c春茶上市请提醒",
    "送礼客户, 需要开发票",
    "Prefers SF Express, no weekend delivery",
    "老客户\uff0c包装要结实",
    "Allergic to nuts.\nNo snack samples please.",
    "公司采购, 月结",
)
_ORDER_NOTES = (
    "请用礼盒包装",
    "Please gift wrap",
    "下午送货",
    "不要放快递柜",
    "Call before delivery",
)
_HOUR_WEIGHTS = (2, 1, 1, 0.5, 0.5, 0.5, 1, 2, 4, 6, 7, 7, 9, 8, 6, 6, 6, 7, 8, 10, 12, 13, 10, 5)
_PHONE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "155",
    "156",
    "157",
    "158",
    "159",
    "176",
    "177",
    "178",
    "180",
    "181",
    "182",
    "183",
    "185",
    "186",
    "187",
    "188",
    "189",
    "198",
    "199",
)
_BAD_EMAILS = ("{}@example", "{}.example.com", "{}@@example.com", "{}@example..com")
_BAD_PHONES = ("+86 138 0013 800", "+8612345678901", "021-1234", "1380013800")


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _amount(value: Decimal) -> str:
    return f"{value:.2f}"


def _export_time(moment: datetime | None) -> str:
    """Shopify's export format: `2025-10-07 09:50:26 +0800`."""
    return moment.strftime("%Y-%m-%d %H:%M:%S %z") if moment else ""


def _json_time(moment: datetime) -> str:
    """Shopify's JSON format: `2025-10-07T09:50:26+08:00`."""
    return moment.isoformat(timespec="seconds")


def _protected(value: str | int | None) -> str:
    """As Shopify protects ids, phones and zips from Excel: `'+8613812345678`."""
    return f"'{value}" if value not in (None, "") else ""


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


class _Weighted:
    """Draws from fixed weighted choices quickly (cumulative weights built once)."""

    def __init__(self, items: Sequence[Any], weights: Iterable[float]) -> None:
        self.items = list(items)
        self.cumulative = list(itertools.accumulate(weights))
        if not self.items or self.cumulative[-1] <= 0:
            raise ValueError("nothing to choose from")

    def draw(self, rng: random.Random) -> Any:
        point = rng.random() * self.cumulative[-1]
        return self.items[min(bisect_right(self.cumulative, point), len(self.items) - 1)]


# --- Catalogue and stock --------------------------------------------------------------------


def catalogue() -> tuple[Product, ...]:
    """The shop's products: the same for every seed."""
    return tuple(
        Product(
            sku=sku,
            title_zh=zh,
            title_en=en,
            price=Decimal(price),
            compare_at_price=Decimal(compare) if compare else None,
            vendor=_VENDORS[vendor],
            product_id=8_823_114_000_000 + index * 32_771,
            variant_id=46_102_557_000_000 + index * 65_537,
            grams=grams,
            popularity=float(popularity),
        )
        for index, (sku, zh, en, price, compare, vendor, popularity, grams) in enumerate(_CATALOGUE)
    )


def _stock(
    rng: random.Random, products: Sequence[Product], warehouses: Sequence[Warehouse]
) -> tuple[StockLevel, ...]:
    """Healthy stock everywhere, except a few SKUs below their safety stock and a few at zero
    in one warehouse (never more than one short warehouse per SKU)."""
    pairs = [(p, w) for p in products for w in warehouses]
    short_skus = rng.sample([p.sku for p in products], 7)
    shortages = {
        (sku, rng.choice(warehouses).warehouse_id): ("zero" if i < 3 else "low")
        for i, sku in enumerate(short_skus)
    }
    levels = []
    for product, warehouse in pairs:
        base = max(product.popularity, 3.0)
        on_hand = int(base * rng.uniform(12, 30)) + rng.randrange(10)
        safety = max(5, 5 * round(on_hand / 40))
        kind = shortages.get((product.sku, warehouse.warehouse_id))
        if kind == "zero":
            on_hand = 0
        elif kind == "low":
            on_hand = rng.randrange(1, safety)
        levels.append(StockLevel(product.sku, warehouse.warehouse_id, on_hand, 0, safety))
    return tuple(levels)


# --- People ---------------------------------------------------------------------------------


class _People:
    """Makes customers: names, unique emails and phones, addresses."""

    def __init__(self, rng: random.Random, today: date) -> None:
        self.rng = rng
        self.today = today
        self.emails: set[str] = set()
        self.phones: set[str] = set()
        self.families = _Weighted(_FAMILY_NAMES, (w for _, _, w in _FAMILY_NAMES))
        table = china_regions()
        regions = [r for r in table.regions if r.country_code == "CN" and r.code in _CITIES]
        self.regions = _Weighted(regions, (_PROVINCE_WEIGHTS.get(r.code, 1) for r in regions))
        self.next_id = rng.randrange(6_800_000_000_000, 7_200_000_000_000)

    def customer_id(self) -> int:
        self.next_id += self.rng.randrange(40_000, 9_000_000)
        return self.next_id

    def phone(self) -> str:
        while True:
            number = f"+86{self.rng.choice(_PHONE_PREFIXES)}{self.rng.randrange(10**8):08d}"
            if number not in self.phones:
                self.phones.add(number)
                return number

    def email(self, serial: int, given: str, family: str) -> str:
        rng = self.rng
        given = "".join(ch for ch in given.lower() if ch.isascii() and ch.isalpha())
        family = "".join(ch for ch in family.lower() if ch.isascii() and ch.isalpha())
        style = rng.randrange(4)
        if style == 0:
            local = f"{given}.{family}{serial % 1000}"
        elif style == 1:
            local = f"{family}{given}{rng.randrange(60, 100)}"
        elif style == 2:
            local = f"{given[:1]}{family}_{serial}"
        else:
            local = f"c{serial:05d}.{family}"
        address = f"{local}@{rng.choice(EMAIL_DOMAINS)}"
        retry = 0
        while address in self.emails:
            retry += 1
            address = f"c{serial:05d}.{family}{retry}@{EMAIL_DOMAINS[0]}"
        self.emails.add(address)
        return address

    def name(self) -> tuple[str, str, str, str, bool]:
        """(first name, last name, pinyin or latin given, family, english name?)."""
        rng = self.rng
        family, family_pinyin, _ = self.families.draw(rng)
        if rng.random() < 0.25:
            given = rng.choice(_ENGLISH_GIVEN)
            # `Kevin Zhang` more often than `Kevin Smith`.
            pinyin = rng.random() < 0.6
            last = family_pinyin.capitalize() if pinyin else rng.choice(_ENGLISH_FAMILY)
            return given, last, given, last, True
        given, given_pinyin = rng.choice(_GIVEN_NAMES)
        return given, family, given_pinyin, family_pinyin, False

    def address(
        self, first: str, last: str, english: bool, phone: str | None, company: bool
    ) -> DemoAddress:
        rng = self.rng
        region: Region = self.regions.draw(rng)
        city_zh, city_en = rng.choice(_CITIES[region.code])
        street_zh, street_en = rng.choice(_STREETS)
        number = rng.randrange(1, 800)
        building, room = rng.randrange(1, 30), rng.randrange(1, 33) * 100 + rng.randrange(1, 9)
        has_unit = rng.random() < 0.7
        company_name = ""
        if company:
            word_zh, word_en = rng.choice(_COMPANY_WORDS)
            kind_zh, kind_en = rng.choice(_COMPANY_KINDS)
            company_name = (
                f"{word_en} {kind_en} Co., Ltd."
                if english
                else f"{city_zh}{word_zh}{kind_zh}有限公司"
            )
        if english:
            line1, city = f"No. {number} {street_en}", city_en
            line2 = f"Building {building}, Room {room}" if has_unit else ""
            name = f"{first} {last}"
        else:
            line1, city = f"{street_zh}{number}号", city_zh
            line2 = f"{building}栋{room}室" if has_unit else ""
            name = f"{last}{first}"
        return DemoAddress(
            first_name=first,
            last_name=last,
            name=name,
            company=company_name,
            address1=line1,
            address2=line2,
            city=city,
            province_code=region.code,
            province=region.name,
            country_code="CN",
            zip=f"{rng.choice(region.postcode_prefixes)}{rng.randrange(10_000):04d}",
            phone=phone,
            latitude=round(region.latitude + rng.uniform(-0.3, 0.3), 4),
            longitude=round(region.longitude + rng.uniform(-0.3, 0.3), 4),
        )

    def customer(self, index: int) -> DemoCustomer:
        rng = self.rng
        first, last, given_latin, family_latin, english = self.name()
        contact = rng.random()
        has_email, has_phone = contact >= 0.05, contact < 0.88  # a few phone-only, email-only
        email = self.email(index + 1, given_latin, family_latin) if has_email else None
        phone = self.phone() if has_phone else None
        birthday = None
        if rng.random() < 0.6:
            age_days = rng.randrange(18 * 365, 70 * 365)
            birthday = self.today - timedelta(days=age_days)
        wholesale = rng.random() < 0.015
        company = wholesale or rng.random() < 0.04
        tags = []
        if wholesale:
            tags.append("wholesale")
        if rng.random() < 0.25:
            tags.append("微信会员")
        if rng.random() < 0.15:
            tags.append("tea-lover")
        note = rng.choice(_NOTES) if rng.random() < 0.04 else ""
        return DemoCustomer(
            index=index,
            customer_id=self.customer_id(),
            first_name=first,
            last_name=last,
            english_name=english,
            email=email,
            phone=phone,
            birthday=birthday,
            locale="en" if english and rng.random() < 0.7 else "zh-CN",
            address=self.address(first, last, english, phone, company),
            accepts_email=has_email and rng.random() < 0.55,
            accepts_sms=has_phone and rng.random() < 0.35,
            tags=tuple(tags),
            note=note,
            tax_exempt=wholesale,
        )


# --- Orders ---------------------------------------------------------------------------------


def _in_season(day: date, sku: str) -> float | None:
    """The weight of a seasonal SKU on `day`: its season's weight, 0 out of season; None for
    an SKU without a season."""
    season = _SEASONS.get(sku)
    if season is None:
        return None
    start, end, weight = season
    key = (day.month, day.day)
    inside = start <= key <= end if start <= end else key >= start or key <= end
    return weight if inside else 0.0


def _day_weight(day: date, first: date, span: int) -> float:
    """How busy a day is: slow growth over the year, weekends, 618, Double 11, Double 12,
    Mid-Autumn gifts, and the Spring Festival lull."""
    weight = 0.8 + 0.4 * (day - first).days / max(span, 1)
    if day.weekday() >= 5:
        weight *= 1.15
    month, dom = day.month, day.day
    if month == 11 and dom == 11:
        weight *= 6
    elif month == 11 and dom < 11:
        weight *= 1.7
    elif month == 6 and dom == 18:
        weight *= 4
    elif month == 6 and dom < 18:
        weight *= 1.4
    elif month == 12 and dom == 12:
        weight *= 2.5
    elif month == 9:
        weight *= 1.25
    elif (month == 1 and dom >= 20) or (month == 2 and dom <= 15):
        weight *= 0.55
    return weight


def _allocate(discount: Decimal, amounts: Sequence[Decimal]) -> list[Decimal]:
    """`discount` spread over lines in proportion to their amounts, to the cent."""
    gross = sum(amounts, ZERO)
    if not discount or not gross:
        return [ZERO for _ in amounts]
    shares = [(discount * a / gross).quantize(CENT, rounding=ROUND_DOWN) for a in amounts]
    largest = max(range(len(amounts)), key=lambda i: amounts[i])
    shares[largest] += discount - sum(shares, ZERO)
    return shares


@dataclass
class _Counters:
    order_id: int
    line_id: int
    number: int = FIRST_ORDER_NUMBER


class _Orders:
    """Makes orders: baskets, discounts, shipping, statuses."""

    def __init__(self, rng: random.Random, products: Sequence[Product], today: date) -> None:
        self.rng = rng
        self.products = list(products)
        self.now = datetime.combine(today, time(0), CHINA_TIME)  # the start of today
        self.counters = _Counters(
            order_id=rng.randrange(5_600_000_000_000, 5_900_000_000_000),
            line_id=rng.randrange(14_100_000_000_000, 14_400_000_000_000),
        )
        self.hours = _Weighted(range(24), _HOUR_WEIGHTS)
        self._baskets: dict[tuple[int, int], _Weighted] = {}

    def moment(self, day: date, hours: _Weighted | None = None) -> datetime:
        rng = self.rng
        hour = (hours or self.hours).draw(rng)
        return datetime.combine(
            day, time(hour, rng.randrange(60), rng.randrange(60)), tzinfo=CHINA_TIME
        )

    def _products_on(self, day: date) -> _Weighted:
        key = (day.month, day.day)
        if key not in self._baskets:
            weights = []
            for product in self.products:
                season = _in_season(day, product.sku)
                if season is None:
                    weights.append(product.popularity)
                elif product.popularity:
                    weights.append(product.popularity + season)
                else:
                    weights.append(season)
            self._baskets[key] = _Weighted(self.products, weights)
        return self._baskets[key]

    def basket(self, day: date, loyalty: float) -> list[tuple[Product, int]]:
        rng = self.rng
        count = rng.choices((1, 2, 3, 4), weights=(50, 30, 14, 6))[0]
        if loyalty > 3 and count < 4 and rng.random() < 0.4:
            count += 1
        chooser = self._products_on(day)
        chosen: list[Product] = []
        for _ in range(count * 4):
            product = chooser.draw(rng)
            if product not in chosen:
                chosen.append(product)
            if len(chosen) == count:
                break
        lines = []
        for product in chosen:
            quantity = rng.choices((1, 2, 3), weights=(75, 18, 7))[0]
            if product.price >= 300:
                quantity = 1
            lines.append((product, quantity))
        return lines

    def discount(
        self, day: date, gross: Decimal, first_order: bool, vip: bool
    ) -> tuple[str, Decimal]:
        rng = self.rng
        if day.month == 11 and day.day <= 11 and gross >= 299 and rng.random() < 0.6:
            return "DOUBLE11", Decimal("50.00")
        if day.month == 6 and day.day <= 18 and gross >= 199 and rng.random() < 0.5:
            return "618SALE", Decimal("30.00")
        if first_order and rng.random() < 0.3:
            return "WELCOME10", _money(gross * Decimal("0.10"))
        if vip and rng.random() < 0.25:
            return "VIP15", _money(gross * Decimal("0.15"))
        return "", ZERO

    def order(
        self,
        customer: DemoCustomer,
        created_at: datetime,
        *,
        loyalty: float,
        first_order: bool,
        live: bool,
    ) -> DemoOrder:
        rng = self.rng
        counters = self.counters
        counters.order_id += rng.randrange(2_000_000, 90_000_000)
        order_id, number = counters.order_id, counters.number
        counters.number += 1
        day = created_at.date()
        picked = self.basket(day, loyalty)
        gross = sum((p.price * q for p, q in picked), ZERO)
        code, discount = self.discount(day, gross, first_order, loyalty > 5)
        shares = _allocate(discount, [p.price * q for p, q in picked])
        lines = []
        for (product, quantity), share in zip(picked, shares, strict=True):
            counters.line_id += rng.randrange(1, 5_000)
            lines.append(
                DemoLine(
                    line_id=counters.line_id,
                    sku=product.sku,
                    title=product.title,
                    quantity=quantity,
                    price=product.price,
                    compare_at_price=product.compare_at_price,
                    discount=share,
                    vendor=product.vendor,
                    product_id=product.product_id,
                    variant_id=product.variant_id,
                )
            )
        subtotal = gross - discount
        province = customer.address.province_code
        if subtotal >= 199:
            shipping, method = ZERO, "包邮 Free Shipping"
        elif rng.random() < 0.2:
            shipping, method = Decimal("22.00"), "顺丰速运 SF Express"
        else:
            shipping, method = Decimal("10.00"), "标准快递 Standard Shipping"
        if province in _REMOTE:
            shipping += Decimal("15.00")
        total = subtotal + shipping
        payment = rng.choices(("Alipay", "WeChat Pay", "Shopify Payments"), weights=(5, 4, 1))[0]
        order = DemoOrder(
            order_id=order_id,
            number=number,
            customer_index=customer.index,
            customer_id=customer.customer_id,
            email=customer.email,
            phone=customer.phone,
            accepts_marketing=customer.accepts_email,
            created_at=created_at,
            financial_status="paid",
            fulfillment_status="unfulfilled",
            paid_at=None,
            fulfilled_at=None,
            cancelled_at=None,
            lines=tuple(lines),
            discount_code=code,
            discount=discount,
            subtotal=subtotal,
            shipping=shipping,
            shipping_method=method,
            total=total,
            refunded=ZERO,
            address=customer.address,
            payment_method=payment,
            note=rng.choice(_ORDER_NOTES) if rng.random() < 0.05 else "",
            tags=("11.11",) if code == "DOUBLE11" else (),
        )
        return self._live_status(order) if live else self._history_status(order)

    def _live_status(self, order: DemoOrder) -> DemoOrder:
        rng = self.rng
        if rng.random() < 0.1:  # waiting for a bank transfer
            return replace(order, financial_status="pending", payment_method="Bank Deposit")
        paid_at = order.created_at + timedelta(seconds=rng.randrange(20, 180))
        return replace(order, paid_at=paid_at)

    def _history_status(self, order: DemoOrder) -> DemoOrder:
        """Most orders paid and fulfilled; recent ones not yet fulfilled (or not yet paid);
        some cancelled (voided before payment, refunded after); a few partially refunded."""
        rng = self.rng
        created = order.created_at
        latest = self.now - timedelta(seconds=1)  # nothing in the history happens today
        age = self.now - created
        draw = rng.random()
        if draw < 0.03:
            cancelled_at = min(created + timedelta(minutes=rng.randrange(10, 1200)), latest)
            if rng.random() < 0.6:
                paid_at = min(created + timedelta(seconds=rng.randrange(20, 240)), cancelled_at)
                return replace(
                    order,
                    financial_status="refunded",
                    paid_at=paid_at,
                    cancelled_at=cancelled_at,
                    refunded=order.total,
                )
            return replace(order, financial_status="voided", cancelled_at=cancelled_at)
        if age < timedelta(hours=72) and draw < 0.15:
            return replace(order, financial_status="pending", payment_method="Bank Deposit")
        paid_at = min(created + timedelta(seconds=rng.randrange(20, 240)), latest)
        fulfilled_at = paid_at + timedelta(minutes=rng.randrange(180, 3600))
        if fulfilled_at > latest:
            return replace(order, paid_at=paid_at)
        order = replace(
            order, paid_at=paid_at, fulfillment_status="fulfilled", fulfilled_at=fulfilled_at
        )
        if rng.random() < 0.025:
            refund = self._partial_refund(order)
            if refund:
                return replace(order, financial_status="partially_refunded", refunded=refund)
        return order

    def _partial_refund(self, order: DemoOrder) -> Decimal:
        """One unit of one line back (net of its discount), or a goodwill gesture."""
        rng = self.rng
        if sum(line.quantity for line in order.lines) >= 2:
            line = rng.choice(order.lines)
            net = (line.amount - line.discount) / line.quantity
            return net.quantize(CENT, rounding=ROUND_DOWN)
        if order.subtotal > 40:
            return Decimal("20.00")
        return ZERO


def _loyalty(rng: random.Random) -> float:
    """A customer's appetite: Pareto distributed, so a minority buys most."""
    return min(rng.paretovariate(1.3), 30.0)


def _history_count(rng: random.Random, loyalty: float) -> int:
    if rng.random() < 0.08:
        return 0  # signed up, never bought
    if loyalty <= 1.0:
        return 1
    return min(1 + int(rng.expovariate(1 / (loyalty - 0.7))), 40)


# --- Webhook payloads -----------------------------------------------------------------------


def _money_set(amount: Decimal) -> dict[str, Any]:
    money = {"amount": _amount(amount), "currency_code": CURRENCY}
    return {"shop_money": money, "presentment_money": dict(money)}


def _address_payload(address: DemoAddress) -> dict[str, Any]:
    return {
        "first_name": address.first_name,
        "last_name": address.last_name,
        "name": address.name,
        "company": address.company or None,
        "address1": address.address1,
        "address2": address.address2 or None,
        "city": address.city,
        "province": address.province,
        "province_code": address.province_code,
        "country": "China",
        "country_code": address.country_code,
        "zip": address.zip,
        "phone": address.phone,
        "latitude": address.latitude,
        "longitude": address.longitude,
    }


def order_payload(
    order: DemoOrder, customer: DemoCustomer, *, paid: bool, updated_at: datetime
) -> dict[str, Any]:
    """The Shopify REST webhook body of `order` (an Order resource), before (`paid=False`)
    or after its payment."""
    financial_status = "paid" if paid else "pending"
    processed_at = order.paid_at if paid and order.paid_at else order.created_at
    items = [
        {
            "id": line.line_id,
            "admin_graphql_api_id": f"gid://shopify/LineItem/{line.line_id}",
            "sku": line.sku,
            "title": line.title,
            "name": line.title,
            "variant_title": None,
            "vendor": line.vendor,
            "quantity": line.quantity,
            "current_quantity": line.quantity,
            "fulfillable_quantity": line.quantity,
            "fulfillment_status": None,
            "price": _amount(line.price),
            "price_set": _money_set(line.price),
            "total_discount": "0.00",
            "discount_allocations": (
                [
                    {
                        "amount": _amount(line.discount),
                        "amount_set": _money_set(line.discount),
                        "discount_application_index": 0,
                    }
                ]
                if line.discount
                else []
            ),
            "product_id": line.product_id,
            "variant_id": line.variant_id,
            "requires_shipping": True,
            "taxable": True,
            "gift_card": False,
            "tax_lines": [],
        }
        for line in order.lines
    ]
    address = _address_payload(order.address)
    gross = sum((line.amount for line in order.lines), ZERO)
    return {
        "id": order.order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order.order_id}",
        "name": order.name,
        "number": order.number - 1000,
        "order_number": order.number,
        "email": order.email,
        "contact_email": order.email,
        "phone": order.phone,
        "buyer_accepts_marketing": order.accepts_marketing,
        "created_at": _json_time(order.created_at),
        "updated_at": _json_time(updated_at),
        "processed_at": _json_time(processed_at),
        "cancelled_at": None,
        "cancel_reason": None,
        "closed_at": None,
        "confirmed": True,
        "test": False,
        "currency": CURRENCY,
        "presentment_currency": CURRENCY,
        "customer_locale": customer.locale,
        "financial_status": financial_status,
        "fulfillment_status": None,
        "total_line_items_price": _amount(gross),
        "total_line_items_price_set": _money_set(gross),
        "total_discounts": _amount(order.discount),
        "total_discounts_set": _money_set(order.discount),
        "subtotal_price": _amount(order.subtotal),
        "subtotal_price_set": _money_set(order.subtotal),
        "total_shipping_price_set": _money_set(order.shipping),
        "total_tax": "0.00",
        "total_tax_set": _money_set(ZERO),
        "taxes_included": True,
        "total_price": _amount(order.total),
        "total_price_set": _money_set(order.total),
        "total_outstanding": "0.00" if paid else _amount(order.total),
        "discount_codes": (
            [{"code": order.discount_code, "amount": _amount(order.discount), "type": "fixed"}]
            if order.discount_code
            else []
        ),
        "payment_gateway_names": [order.payment_method],
        "source_name": "web",
        "tags": ", ".join(order.tags),
        "note": order.note or None,
        "note_attributes": [],
        "line_items": items,
        "shipping_lines": [
            {
                "id": order.order_id // 1000 + 7,
                "code": order.shipping_method,
                "title": order.shipping_method,
                "price": _amount(order.shipping),
                "price_set": _money_set(order.shipping),
                "discounted_price": _amount(order.shipping),
                "source": "shopify",
                "tax_lines": [],
                "discount_allocations": [],
            }
        ],
        "billing_address": dict(address),
        "shipping_address": address,
        "customer": {
            "id": customer.customer_id,
            "admin_graphql_api_id": f"gid://shopify/Customer/{customer.customer_id}",
            "email": customer.email,
            "phone": customer.phone,
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "state": "enabled",
            "verified_email": customer.email is not None,
            "tax_exempt": customer.tax_exempt,
            "tags": ", ".join(customer.tags),
            "currency": CURRENCY,
            "note": customer.note or None,
            "email_marketing_consent": {
                "state": "subscribed" if customer.accepts_email else "not_subscribed",
                "opt_in_level": "single_opt_in",
                "consent_updated_at": None,
            },
            "default_address": {**_address_payload(customer.address), "default": True},
        },
        "fulfillments": [],
        "refunds": [],
    }


def _live_events(
    orders: Sequence[DemoOrder], customers: Sequence[DemoCustomer]
) -> tuple[tuple[str, dict[str, Any]], ...]:
    timed: list[tuple[datetime, int, str, dict[str, Any]]] = []
    for order in orders:
        customer = customers[order.customer_index]
        created = order_payload(order, customer, paid=False, updated_at=order.created_at)
        timed.append((order.created_at, 0, "orders/create", created))
        if order.paid_at is not None:
            paid = order_payload(order, customer, paid=True, updated_at=order.paid_at)
            timed.append((order.paid_at, 1, "orders/paid", paid))
    timed.sort(key=lambda item: (item[0], item[1], item[3]["id"]))
    return tuple((topic, payload) for _, _, topic, payload in timed)


# --- The shop -------------------------------------------------------------------------------


def generate(
    seed: int = 7, customers: int = 500, days: int = 365, today: date | None = None
) -> DemoShop:
    """A demo shop of `customers` customers with `days` days of order history up to the day
    before `today` (default: the real today), and about 30 live orders on `today`."""
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be at least 1")
    today = today or date.today()
    rng = random.Random(seed)
    products = catalogue()
    warehouses = load_warehouses(default_warehouses_json())
    stock = _stock(rng, products, warehouses)

    people = _People(rng, today)
    bad_count = max(3, round(customers / 100))
    positions = sorted(rng.sample(range(1, customers + bad_count + 1), bad_count))
    kinds = list(BAD_ROW_KINDS)
    rng.shuffle(kinds)
    bad_rows = {row: kinds[i % len(kinds)] for i, row in enumerate(positions)}
    bad_lines: dict[int, str] = {}
    found: list[DemoCustomer] = []
    for row in range(1, customers + bad_count + 1):
        if row in bad_rows:
            junk = people.customer(customers + bad_count + row)  # not in the shop
            bad_lines[row] = _bad_line(rng, junk, bad_rows[row])
        else:
            found.append(people.customer(len(found)))
    loyalty = [_loyalty(rng) for _ in found]

    # The history: each customer's orders on days drawn by how busy each day is.
    first_day = today - timedelta(days=days)
    calendar = [first_day + timedelta(days=i) for i in range(days)]
    busy = _Weighted(calendar, (_day_weight(d, first_day, days) for d in calendar))
    maker = _Orders(rng, products, today)
    planned: list[tuple[datetime, int]] = []
    for customer, appetite in zip(found, loyalty, strict=True):
        for _ in range(_history_count(rng, appetite)):
            planned.append((maker.moment(busy.draw(rng)), customer.index))
    planned.sort()
    seen: set[int] = set()
    history: list[DemoOrder] = []
    for created_at, index in planned:
        history.append(
            maker.order(
                found[index],
                created_at,
                loyalty=loyalty[index],
                first_order=index not in seen,
                live=False,
            )
        )
        seen.add(index)

    # What the customers file says about each: orders, spend, and the tags that follow.
    counts = [0] * len(found)
    spent = [ZERO] * len(found)
    for order in history:
        counts[order.customer_index] += 1
        spent[order.customer_index] += order.revenue
    ranked = sorted(range(len(found)), key=lambda i: (-spent[i], i))
    vips = set(ranked[: max(1, len(found) // 20)])
    final = []
    for customer in found:
        i = customer.index
        tags = list(customer.tags)
        if i in vips and spent[i] > 0:
            tags.insert(0, "vip")
        if counts[i] >= 5:
            tags.append("老客户")
        if customer.accepts_email and rng.random() < 0.5:
            tags.append("newsletter")
        final.append(
            replace(customer, tags=tuple(tags), orders_count=counts[i], total_spent=spent[i])
        )

    # Today: existing customers (the loyal ones more often) and new buyers.
    regulars = _Weighted(final, loyalty)
    new_customers: list[DemoCustomer] = []
    buyers: list[DemoCustomer] = []
    for _ in range(LIVE_ORDERS):
        if rng.random() < 0.6:
            buyers.append(regulars.draw(rng))
        else:
            buyer = people.customer(len(final) + len(new_customers))
            new_customers.append(buyer)
            buyers.append(buyer)
    live_hours = _Weighted(
        range(24), [w if 8 <= h <= 21 else 0 for h, w in enumerate(_HOUR_WEIGHTS)]
    )
    moments = sorted(maker.moment(today, live_hours) for _ in buyers)
    everyone = [*final, *new_customers]
    live = [
        maker.order(
            buyer,
            moment,
            loyalty=loyalty[buyer.index] if buyer.index < len(final) else 1.0,
            first_order=buyer.index >= len(final) or counts[buyer.index] == 0,
            live=True,
        )
        for buyer, moment in zip(buyers, moments, strict=True)
    ]
    return DemoShop(
        seed=seed,
        today=today,
        products=products,
        warehouses=warehouses,
        stock=stock,
        customers=tuple(final),
        orders=tuple(history),
        new_customers=tuple(new_customers),
        live_orders=tuple(live),
        live_events=_live_events(live, everyone),
        bad_customer_rows=bad_rows,
        bad_customer_lines=bad_lines,
    )


# --- Files ----------------------------------------------------------------------------------


def _csv_line(values: Sequence[str]) -> str:
    """One CSV record without its line break (a field with a line break is quoted)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()[:-1]


def _customer_values(customer: DemoCustomer) -> list[str]:
    address = customer.address
    return [
        _protected(customer.customer_id),
        customer.first_name,
        customer.last_name,
        customer.email or "",
        _yes(customer.accepts_email),
        address.company,
        address.address1,
        address.address2,
        address.city,
        address.province_code,
        address.country_code,
        _protected(address.zip),
        _protected(address.phone),
        _protected(customer.phone),
        _yes(customer.accepts_sms),
        _amount(customer.total_spent),
        str(customer.orders_count),
        customer.note,
        _yes(customer.tax_exempt),
        ", ".join(customer.tags),
    ]


def _bad_line(rng: random.Random, customer: DemoCustomer, kind: str) -> str:
    """The raw text of a customers.csv row that the import must refuse, as `kind`."""
    values = _customer_values(customer)
    column = CUSTOMER_COLUMNS.index
    local = (customer.email or "someone@example.com").split("@")[0]
    if kind == INVALID_EMAIL:
        values[column("Email")] = rng.choice(_BAD_EMAILS).format(local)
    elif kind == INVALID_PHONE:
        bad = rng.choice(_BAD_PHONES)
        values[column("Phone")] = values[column("Default Address Phone")] = _protected(bad)
    elif kind == NO_IDENTITY:
        for name in ("Customer ID", "Email", "Phone", "Default Address Phone"):
            values[column(name)] = ""
    elif kind == WRONG_COLUMN_COUNT:
        # An address typed with a comma and exported without quotes: one column too many.
        values[column("Default Address Address2")] = "\x00A2\x00"
        unit = "5栋, 1201室" if not customer.english_name else "Building 5, Room 1201"
        return _csv_line(values).replace("\x00A2\x00", unit)
    elif kind == BROKEN_QUOTING:
        # Text after a closing quote: `"VIP" 老客户`.
        values[column("Note")] = "\x00NOTE\x00"
        return _csv_line(values).replace("\x00NOTE\x00", '"VIP" 老客户')
    return _csv_line(values)


def customers_csv(shop: DemoShop) -> bytes:
    """customers.csv: Shopify's customer export, UTF-8 with BOM, bad rows included."""
    lines = [_csv_line(CUSTOMER_COLUMNS)]
    good = iter(shop.customers)
    for row in range(1, len(shop.customers) + len(shop.bad_customer_lines) + 1):
        bad = shop.bad_customer_lines.get(row)
        lines.append(bad if bad is not None else _csv_line(_customer_values(next(good))))
    return codecs.BOM_UTF8 + ("\n".join(lines) + "\n").encode("utf-8")


# The address columns of the order export, after "Billing " and "Shipping ".
_PLACE = (
    "Name",
    "Street",
    "Address1",
    "Address2",
    "Company",
    "City",
    "Zip",
    "Province",
    "Country",
    "Phone",
)


def _order_rows(order: DemoOrder) -> list[list[str]]:
    address = order.address
    street = ", ".join(part for part in (address.address1, address.address2) if part)
    place = [
        address.name,
        street,
        address.address1,
        address.address2,
        address.company,
        address.city,
        _protected(address.zip),
        address.province_code,
        address.country_code,
        _protected(address.phone),
    ]
    paid = order.financial_status in PAID_STATUSES
    head: dict[str, str] = {
        "Financial Status": order.financial_status,
        "Paid at": _export_time(order.paid_at),
        "Fulfillment Status": order.fulfillment_status,
        "Fulfilled at": _export_time(order.fulfilled_at),
        "Accepts Marketing": _yes(order.accepts_marketing),
        "Currency": CURRENCY,
        "Subtotal": _amount(order.subtotal),
        "Shipping": _amount(order.shipping),
        "Taxes": "0.00",
        "Total": _amount(order.total),
        "Discount Code": order.discount_code,
        "Discount Amount": _amount(order.discount),
        "Shipping Method": order.shipping_method,
        "Created at": _export_time(order.created_at),
        **dict(zip([f"Billing {c}" for c in _PLACE], place, strict=True)),
        **dict(zip([f"Shipping {c}" for c in _PLACE], place, strict=True)),
        "Notes": order.note,
        "Cancelled at": _export_time(order.cancelled_at),
        "Payment Method": order.payment_method,
        "Payment Reference": f"c{order.order_id % 10**11}.1" if paid else "",
        "Refunded Amount": _amount(order.refunded),
        "Outstanding Balance": "0.00"
        if order.financial_status != "pending"
        else _amount(order.total),
        "Id": str(order.order_id),
        "Tags": ", ".join(order.tags),
        "Risk Level": "Low",
        "Source": "web",
        "Phone": _protected(order.phone),
    }
    rows = []
    for position, line in enumerate(order.lines):
        values = {
            "Name": order.name,
            "Email": order.email or "",
            "Lineitem quantity": str(line.quantity),
            "Lineitem name": line.title,
            "Lineitem price": _amount(line.price),
            "Lineitem compare at price": (
                _amount(line.compare_at_price) if line.compare_at_price else ""
            ),
            "Lineitem sku": line.sku,
            "Lineitem requires shipping": "true",
            "Lineitem taxable": "true",
            "Lineitem fulfillment status": (
                "fulfilled" if order.fulfillment_status == "fulfilled" else "pending"
            ),
            "Vendor": line.vendor,
            "Lineitem discount": _amount(line.discount),
        }
        if position == 0:
            values.update(head)
        rows.append([values.get(column, "") for column in ORDER_COLUMNS])
    return rows


def orders_csv(shop: DemoShop) -> bytes:
    """orders.csv: Shopify's order export of the history, UTF-8 with BOM."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ORDER_COLUMNS)
    for order in shop.orders:
        writer.writerows(_order_rows(order))
    return codecs.BOM_UTF8 + out.getvalue().encode("utf-8")


def inventory_csv(shop: DemoShop) -> bytes:
    """inventory.csv: `sku,warehouse,on_hand,safety_stock`, plain UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(INVENTORY_COLUMNS)
    for level in shop.stock:
        writer.writerow([level.sku, level.warehouse_id, level.on_hand, level.safety_stock])
    return out.getvalue().encode("utf-8")


def write_files(shop: DemoShop, directory: Path) -> dict[str, Path]:
    """Writes customers.csv, orders.csv and inventory.csv into `directory` (made if needed);
    returns {"customers": path, "orders": path, "inventory": path}."""
    directory.mkdir(parents=True, exist_ok=True)
    contents = {
        "customers": customers_csv(shop),
        "orders": orders_csv(shop),
        "inventory": inventory_csv(shop),
    }
    paths = {}
    for name, data in contents.items():
        path = directory / f"{name}.csv"
        path.write_bytes(data)
        paths[name] = path
    return paths

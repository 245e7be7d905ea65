"""The words the generated world is made of: a category tree, attributes, brand syllables.

Everything here is static text; `genrec.data.synth` turns it into a catalogue.
A name written `"sneakers|trainers"` is one concept with a canonical surface
form first and synonyms after the bar: titles and queries pick among them, so a
search for "trainers" must find items titled "Sneakers" (what dense retrieval
and query understanding are for). Surface forms are unique across concepts; the
world checks it when it builds its query vocabulary.
"""

from __future__ import annotations

CATEGORY_TREE: dict[str, dict[str, list[str]]] = {
    "Clothing": {
        "Tops": ["t-shirt|tee", "shirt|button-down", "sweater|jumper", "hoodie|sweatshirt"],
        "Bottoms": ["jeans", "trousers|pants", "shorts", "skirt", "leggings"],
        "Outerwear": ["jacket", "coat|overcoat", "raincoat", "puffer jacket|down jacket"],
    },
    "Shoes": {
        "Athletic Shoes": ["running shoes|runners", "sneakers|trainers", "trail shoes", "basketball shoes"],
        "Casual Shoes": ["loafers", "sandals", "slippers", "espadrilles"],
        "Boots": ["ankle boots", "hiking boots", "rain boots|wellies", "chelsea boots"],
    },
    "Electronics": {
        "Audio": ["headphones", "earbuds|earphones", "bluetooth speaker|portable speaker", "soundbar"],
        "Phone Accessories": ["phone case|phone cover", "charger", "power bank", "screen protector"],
        "Computer Accessories": ["keyboard", "mouse", "webcam", "usb hub", "monitor stand"],
    },
    "Home": {
        "Kitchen": ["frying pan|skillet", "knife set", "kettle", "coffee mug|mug", "cutting board|chopping board"],
        "Bedding": ["duvet|comforter", "pillow", "bed sheets|sheet set", "blanket|throw"],
        "Decor": ["table lamp|lamp", "vase", "rug|carpet", "wall clock", "candle"],
    },
    "Beauty": {
        "Skincare": ["moisturizer|moisturiser", "cleanser|face wash", "sunscreen|sunblock", "serum", "face mask"],
        "Makeup": ["lipstick", "mascara", "foundation", "eyeshadow palette", "nail polish"],
        "Hair Care": ["shampoo", "conditioner", "hair oil", "hair dryer|blow dryer"],
    },
    "Sports": {
        "Fitness": ["yoga mat", "dumbbells|weights", "resistance bands", "jump rope|skipping rope"],
        "Outdoor": ["tent", "backpack|rucksack", "sleeping bag", "water bottle"],
        "Cycling": ["bike helmet|cycling helmet", "bike light", "cycling gloves", "bike lock"],
    },
    "Toys": {
        "Building Toys": ["building blocks|bricks", "construction set", "marble run"],
        "Games": ["board game", "card game", "jigsaw puzzle"],
        "Dolls & Plush": ["teddy bear", "doll", "stuffed animal|plush toy", "action figure"],
    },
    "Grocery": {
        "Coffee & Tea": ["coffee beans", "ground coffee", "green tea", "herbal tea"],
        "Snacks": ["chocolate bar", "potato chips|crisps", "mixed nuts", "cookies|biscuits", "granola bar"],
        "Pantry": ["olive oil", "pasta", "honey jar", "peanut butter"],
    },
    "Accessories": {
        "Bags": ["handbag|purse", "tote bag|tote", "wallet", "crossbody bag"],
        "Jewelry": ["necklace", "ring", "earrings", "bracelet"],
        "Watches & Eyewear": ["wristwatch|watch", "sunglasses|shades", "smartwatch|smart watch"],
    },
}
"""department → group → leaves: a three-level tree with 100+ leaves."""

COLOURS = ["black", "white", "red", "blue", "green", "grey|gray", "pink", "navy|dark blue", "beige|cream",
           "brown", "yellow", "purple|violet", "orange", "silver", "gold"]

ATTRIBUTES: dict[str, dict[str, list[str]]] = {
    "Clothing": {
        "colour": COLOURS,
        "material": ["cotton", "linen", "wool", "denim", "polyester", "silk", "cashmere", "fleece"],
        "size": ["XS", "S", "M", "L", "XL", "XXL"],
        "style": ["casual", "slim fit|slim", "oversized|loose fit", "vintage|retro", "sporty|athletic", "classic",
                  "streetwear"],
    },
    "Shoes": {
        "colour": COLOURS[:12],
        "material": ["leather", "suede", "canvas", "mesh", "rubber", "knit"],
        "size": ["EU 37", "EU 38", "EU 39", "EU 40", "EU 41", "EU 42", "EU 43", "EU 44", "EU 45"],
        "style": ["casual", "sporty|athletic", "classic", "chunky", "minimalist", "waterproof"],
    },
    "Electronics": {
        "colour": ["black", "white", "silver", "blue", "pink", "grey|gray"],
        "connectivity": ["wireless|cordless", "bluetooth", "wired", "usb-c|type-c", "wifi|wi-fi"],
        "feature": ["noise cancelling|anc", "fast charging", "waterproof", "compact|portable", "gaming", "ergonomic"],
    },
    "Home": {
        "colour": COLOURS[:11],
        "material": ["ceramic", "glass", "wood|wooden", "stainless steel", "bamboo", "cotton", "linen", "cast iron"],
        "size": ["small", "medium", "large", "king size", "queen size"],
        "style": ["modern", "rustic", "nordic|scandinavian", "minimalist", "vintage|retro", "industrial"],
    },
    "Beauty": {
        "skin type": ["dry skin", "oily skin", "sensitive skin", "all skin types"],
        "scent": ["unscented|fragrance free", "rose", "lavender", "citrus", "vanilla", "coconut"],
        "size": ["30ml", "50ml", "100ml", "200ml", "travel size|mini"],
        "feature": ["organic|natural", "vegan", "spf 50", "hydrating|moisturizing", "anti-aging|anti-ageing"],
    },
    "Sports": {
        "colour": COLOURS[:13],
        "material": ["nylon", "neoprene", "foam", "steel", "polyester", "rubber"],
        "size": ["S", "M", "L", "XL", "one size"],
        "feature": ["lightweight", "waterproof", "foldable", "adjustable", "breathable"],
    },
    "Toys": {
        "age": ["ages 3+|toddler", "ages 6+", "ages 8+", "ages 12+|teen"],
        "material": ["wood|wooden", "plastic", "plush", "cardboard", "metal"],
        "theme": ["dinosaur", "space", "animals", "cars", "princess", "science|stem"],
    },
    "Grocery": {
        "flavour": ["original", "dark chocolate", "vanilla", "caramel", "hazelnut", "salted", "spicy|hot",
                    "mint", "berry"],
        "size": ["100g", "250g", "500g", "1kg", "family pack|value pack"],
        "feature": ["organic|natural", "sugar free|no sugar", "gluten free", "vegan", "fair trade"],
    },
    "Accessories": {
        "colour": COLOURS,
        "material": ["leather", "canvas", "nylon", "stainless steel", "sterling silver", "gold plated"],
        "style": ["classic", "casual", "minimalist", "vintage|retro", "luxury", "boho"],
    },
}
"""department → attribute kind → values; every item of a department has one value per kind."""

ATTRIBUTE_KINDS: list[str] = sorted({kind for kinds in ATTRIBUTES.values() for kind in kinds})

QUERY_ATTRIBUTE_KINDS: frozenset[str] = frozenset(ATTRIBUTE_KINDS) - {"size"}
"""Kinds people type into a search box; sizes are picked on the product page."""

DEPARTMENT_BASE_PRICE: dict[str, float] = {
    "Clothing": 35.0, "Shoes": 70.0, "Electronics": 60.0, "Home": 40.0, "Beauty": 20.0,
    "Sports": 35.0, "Toys": 25.0, "Grocery": 8.0, "Accessories": 50.0,
}

BRAND_TIERS: tuple[str, ...] = ("budget", "mid", "premium", "luxury")
BRAND_TIER_PRICE: tuple[float, ...] = (0.6, 1.0, 1.8, 3.5)
BRAND_TIER_QUALITY: tuple[float, ...] = (-0.4, 0.0, 0.3, 0.5)
BRAND_TIER_SHARE: tuple[float, ...] = (0.35, 0.4, 0.18, 0.07)

BRAND_HEADS = ["Nor", "Vel", "Zan", "Kor", "Lum", "Bri", "Ast", "Mar", "Tor", "Quin", "Sol", "Ever", "Alto",
               "Nova", "Peak", "Urb", "Fen", "Oak", "Tern", "Iso", "Cal", "Dun", "Hal", "Kes", "Lyr", "Mox"]
BRAND_TAILS = ["ax", "ex", "ora", "io", "ix", "wood", "line", "field", "crest", "ward", "ly", "ico", "en",
               "ara", "us", "ton", "vik", "elle", "mo", "ridge"]

TITLE_LEADS = ["New", "2026", "Hot Sale", "Original", "Premium", "Best Seller", "Limited Edition", "Official"]
TITLE_TAILS = ["for Women", "for Men", "Unisex", "Gift Idea", "Pack of 2", "Free Shipping", "Everyday",
               "Value Set"]
AI_TITLE_WORDS = ["High Quality", "Perfect Gift", "Trendy", "Ultimate", "Stylish Design", "Must Have"]
"""AI-written listings pad titles with marketing words more often than people do."""

QUERY_FILLERS = ["best", "cheap", "buy", "new", "good"]
"""Words people add to queries that name no attribute."""

AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55+")
GENDERS: tuple[str, ...] = ("female", "male", "other")
CITY_TIERS: tuple[int, ...] = (1, 2, 3, 4)

DEPARTMENT_TASTE_BY_GENDER: dict[str, dict[str, float]] = {
    "female": {"Beauty": 2.5, "Clothing": 1.6, "Accessories": 1.6, "Home": 1.2, "Electronics": 0.6},
    "male": {"Electronics": 2.0, "Sports": 1.8, "Shoes": 1.3, "Beauty": 0.3, "Accessories": 0.7},
    "other": {},
}
DEPARTMENT_TASTE_BY_AGE: dict[str, dict[str, float]] = {
    "18-24": {"Electronics": 1.6, "Clothing": 1.5, "Shoes": 1.4, "Home": 0.5, "Grocery": 0.6},
    "25-34": {"Toys": 1.8, "Clothing": 1.2, "Sports": 1.3},
    "35-44": {"Toys": 2.0, "Home": 1.5, "Grocery": 1.2},
    "45-54": {"Home": 1.7, "Grocery": 1.5, "Electronics": 0.8},
    "55+": {"Home": 2.0, "Grocery": 1.8, "Toys": 1.2, "Shoes": 0.7, "Electronics": 0.6},
}
CITY_TIER_PRICE_SENSITIVITY: tuple[float, ...] = (0.2, 0.6, 1.2, 1.8)

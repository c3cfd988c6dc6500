from ninja import Schema


class TokenIn(Schema):
    username: str
    password: str
    name: str = "script"


class TokenOut(Schema):
    token: str
    name: str

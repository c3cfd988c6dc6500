from ninja import Field, Schema


class TokenIn(Schema):
    username: str = Field(..., max_length=150)
    password: str = Field(..., max_length=4096)
    name: str = Field("script", min_length=1, max_length=100)


class TokenOut(Schema):
    token: str
    name: str

"""The framework's own ceiling: a functions-framework function that does nothing but answer."""


def ok(request):
    return "ok"

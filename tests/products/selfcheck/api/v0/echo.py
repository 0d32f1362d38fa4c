def read(request):
    response = request.copy()
    response.server = "selfcheck"
    return response

"""webhook: POSTs its context as JSON to the URL its template's ``url``
config value names and returns the response's status. The bearer token:
when the template's ``token_secret`` config value names a secret it grants
as readable, the job reads it with ``secret`` and sends it; otherwise a
header grant on the template adds it and the job never holds it. A status
of 400 or more fails the run, so the job is retried."""

from elihu_guest import JobInfo, config, http, info, job, secret


@job
def run(ctx: dict, job: JobInfo) -> dict:
    url = config("url")
    if url is None:
        raise Exception("the template sets no `url` config value (elihu template push --config url=...)")
    headers = {}
    name = config("token_secret")
    if name is not None:
        token = secret(name)
        if token is None:
            raise Exception(f"the template grants no readable secret `{name}`")
        headers["authorization"] = f"Bearer {token}"
    response = http.post(url, json=ctx, headers=headers)
    info(f"POST {url}: {response.status}")
    if response.status >= 400:
        raise Exception(f"{url} answered {response.status}")
    return {"status": response.status}

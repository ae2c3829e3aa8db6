"""A stand-in for the Hub behind `huggingface_hub.HfApi`: repos with a visibility, files, Space variables and
secrets, tokens with a role and the repos they read, and a log of every call, so that tests see what a push
would do to new, private and public repos.

It mimics the real Hub where the pushes rely on it: `repo_info`/`model_info` raise RepositoryNotFoundError
for a repo that is missing or that the token cannot read; `create_repo` of an existing repo raises a 409
HfHubHTTPError (with `exist_ok=False`) or leaves its visibility as it is (with `exist_ok=True`:
huggingface_hub ignores `private` then); a Space needs `space_sdk`; a new repo holds a `.gitattributes`; HTTP
errors carry the server's reason in `server_message`. `force_public` stands for an organisation whose repos
are all public."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

TOKEN = "hf_FakeTokenDoNotPrint123"


class FakeHub:
    def __init__(self):
        self.repos: dict[tuple[str, str], dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.commits: list[dict] = []
        self.tokens: dict[str, dict] = {TOKEN: {"role": "write", "reads": None}}  # None: every repo
        self.force_public = False

    def add(self, repo_id: str, repo_type: str = "model", private: bool | None = True, files=(), gated=False,
            visibility: str | None = None):
        self.repos[(repo_type, repo_id)] = {"private": private, "gated": gated, "visibility": visibility,
                                            "files": {f: b"old" for f in files}, "variables": {},
                                            "secrets": {}}
        return self.repos[(repo_type, repo_id)]

    def add_token(self, token: str, role: str = "fineGrained", reads=()):
        self.tokens[token] = {"role": role, "reads": set(reads)}

    def repo(self, repo_id: str, repo_type: str = "model") -> dict:
        return self.repos[(repo_type, repo_id)]

    def uploads(self) -> int:
        return sum(1 for name, _ in self.calls if name == "create_commit")

    def install(self, monkeypatch, token: str | None = TOKEN) -> FakeHub:
        import huggingface_hub
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

        hub = self

        def http_error(cls, status, text, server=None):
            response = SimpleNamespace(status_code=status, headers={}, request=None)
            return cls(text, response=response, server_message=server)

        def readable(repo_id, key, tok):
            r = hub.repos.get(key)
            if r is None:
                return False
            reads = hub.tokens.get(tok or token, {}).get("reads", set())
            return not r["private"] or reads is None or repo_id in reads

        def repo_info(self, repo_id, *, repo_type=None, token=None, **kw):
            hub.calls.append(("repo_info", repo_id))
            key = (repo_type or "model", repo_id)
            if not readable(repo_id, key, token):
                raise http_error(RepositoryNotFoundError, 404,
                                 f"404 Client Error: Repository Not Found for url: .../{repo_id}")
            r = hub.repos[key]
            extra = {"visibility": r["visibility"]} if r["visibility"] else {}
            return SimpleNamespace(id=repo_id, private=r["private"], gated=r["gated"], **extra)

        def model_info(self, repo_id, *, token=None, **kw):
            return repo_info(self, repo_id, repo_type="model", token=token)

        def whoami(self, token=None, **kw):
            return {"name": "me", "auth": {"type": "access_token",
                                           "accessToken": {"role": hub.tokens[token or TOKEN]["role"]}}}

        def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False, space_sdk=None, **kw):
            hub.calls.append(("create_repo", repo_id))
            key = (repo_type or "model", repo_id)
            if repo_type == "space" and space_sdk is None:
                raise ValueError("No space_sdk provided. `create_repo` expects space_sdk to be one of ...")
            if key in hub.repos:
                if not exist_ok:
                    raise http_error(HfHubHTTPError, 409,
                                     "409 Client Error: Conflict for url: .../api/repos/create",
                                     "You already created this model repo")
            else:
                hub.add(repo_id, repo_type or "model", private=bool(private) and not hub.force_public,
                        files=[".gitattributes"])
            return f"https://huggingface.co/{repo_id}"

        def list_repo_files(self, repo_id, *, repo_type=None, **kw):
            return sorted(hub.repos[(repo_type or "model", repo_id)]["files"])

        def create_commit(self, repo_id, operations, *, commit_message, repo_type=None, **kw):
            hub.calls.append(("create_commit", repo_id))
            files = hub.repos[(repo_type or "model", repo_id)]["files"]
            added, deleted = {}, []
            for op in operations:
                if type(op).__name__ == "CommitOperationAdd":
                    added[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()
                else:
                    deleted.append(op.path_in_repo)
            for name in deleted:
                files.pop(name)
            files.update(added)
            hub.commits.append({"repo_id": repo_id, "repo_type": repo_type, "added": added,
                                "deleted": deleted, "message": commit_message})

        def add_space_variable(self, repo_id, key, value, **kw):
            hub.calls.append(("add_space_variable", repo_id))
            hub.repos[("space", repo_id)]["variables"][key] = value

        def get_space_variables(self, repo_id, **kw):
            return dict(hub.repos[("space", repo_id)]["variables"])

        def delete_space_variable(self, repo_id, key, **kw):
            hub.calls.append(("delete_space_variable", repo_id))
            hub.repos[("space", repo_id)]["variables"].pop(key)

        def add_space_secret(self, repo_id, key, value, **kw):
            hub.calls.append(("add_space_secret", repo_id))
            hub.repos[("space", repo_id)]["secrets"][key] = value

        def refuse(self, *a, **kw):  # the old path: a push must not upload around the allow-list commit
            raise AssertionError("upload_folder/upload_file must not be used: "
                                 "commits go through create_commit")

        for name, fn in dict(repo_info=repo_info, model_info=model_info, whoami=whoami,
                             create_repo=create_repo, list_repo_files=list_repo_files,
                             create_commit=create_commit,
                             add_space_variable=add_space_variable, get_space_variables=get_space_variables,
                             delete_space_variable=delete_space_variable, add_space_secret=add_space_secret,
                             upload_folder=refuse, upload_file=refuse).items():
            monkeypatch.setattr(huggingface_hub.HfApi, name, fn)
        monkeypatch.setattr(huggingface_hub, "get_token", lambda: token)
        return self

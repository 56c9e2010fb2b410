-- Every version of a template that was pushed, with its digest, so the
-- dashboard (and anyone) can see what ran when. Kept until the template is
-- deleted; today's templates start with their current version.
CREATE TABLE template_versions (
    template   TEXT NOT NULL,
    version    BIGINT NOT NULL,
    digest     TEXT NOT NULL,
    pushed_at  BIGINT NOT NULL,
    PRIMARY KEY (template, version)
);
INSERT INTO template_versions (template, version, digest, pushed_at)
SELECT name, version, digest, updated_at FROM templates;

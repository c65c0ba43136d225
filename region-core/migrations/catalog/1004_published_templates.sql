-- The post page template version whose pages the publisher has written to
-- edge KV for each city of this region. A publisher that renders another
-- version re-publishes the city's live pages at start-up, then records its
-- own here, so a template change reaches every page once (the edge serves
-- only pages of its current TEMPLATE_VERSION meanwhile, the rest from the
-- origin). A city without a row has never been re-published.
CREATE TABLE published_templates (
    city        text        PRIMARY KEY,
    version     bigint      NOT NULL CHECK (version >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

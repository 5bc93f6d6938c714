-- Default app schema for a client's Supabase project: a small agency CRM and content hub.
--
-- Applied once, in one transaction, by the project's owner role over a direct connection, so:
-- no CREATE INDEX CONCURRENTLY, no BEGIN/COMMIT, no psql meta-commands.
--
-- Access model. Every row belongs to an organisation; a signed-in user (auth.uid()) sees an
-- organisation's rows when they are one of its members, and admins/owners may change more.
-- Membership is read through SECURITY DEFINER functions in schema `authz` (owned by the
-- schema's owner, so their own query is not subject to RLS, and with an empty search_path so
-- nothing can be shadowed). Policies never query the table they protect, which is what makes
-- a policy recurse ("infinite recursion detected in policy for relation ...").
-- The anonymous role gets no policy anywhere: the API's anon key reads nothing.
-- Every foreign key column has an index whose first column it is.

-- Helpers ---------------------------------------------------------------------------------

CREATE SCHEMA authz;
REVOKE ALL ON SCHEMA authz FROM PUBLIC;
GRANT USAGE ON SCHEMA authz TO authenticated, service_role;

CREATE TYPE public.member_role AS ENUM ('owner', 'admin', 'member', 'viewer');

CREATE FUNCTION public.set_updated_at() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Organisations and people ----------------------------------------------------------------

CREATE TABLE public.organisations (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    slug        text        NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    created_by  uuid        REFERENCES auth.users (id) ON DELETE SET NULL DEFAULT auth.uid(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX organisations_created_by_idx ON public.organisations (created_by);

CREATE TABLE public.members (
    organisation_id uuid               NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    user_id         uuid               NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    role            public.member_role NOT NULL DEFAULT 'member',
    invited_by      uuid               REFERENCES auth.users (id) ON DELETE SET NULL,
    joined_at       timestamptz        NOT NULL DEFAULT now(),
    PRIMARY KEY (organisation_id, user_id)
);
-- organisation_id is covered by the primary key's leading column.
CREATE INDEX members_user_id_idx ON public.members (user_id);
CREATE INDEX members_invited_by_idx ON public.members (invited_by);

CREATE TABLE public.profiles (
    id           uuid        PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    display_name text,
    avatar_url   text,
    timezone     text        NOT NULL DEFAULT 'UTC',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The membership lookups every policy uses. SECURITY DEFINER: they run as the owner of
-- public.members, for whom its RLS does not apply, so no policy recursion is possible.
CREATE FUNCTION authz.is_member(org uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT EXISTS (
        SELECT 1 FROM public.members m
        WHERE m.organisation_id = org AND m.user_id = auth.uid()
    )
$$;

CREATE FUNCTION authz.has_role(org uuid, allowed public.member_role[]) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT EXISTS (
        SELECT 1 FROM public.members m
        WHERE m.organisation_id = org AND m.user_id = auth.uid() AND m.role = ANY (allowed)
    )
$$;

CREATE FUNCTION authz.shares_organisation(other_user uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT EXISTS (
        SELECT 1
        FROM public.members mine
        JOIN public.members theirs ON theirs.organisation_id = mine.organisation_id
        WHERE mine.user_id = auth.uid() AND theirs.user_id = other_user
    )
$$;

REVOKE ALL ON FUNCTION authz.is_member(uuid), authz.has_role(uuid, public.member_role[]),
    authz.shares_organisation(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authz.is_member(uuid), authz.has_role(uuid, public.member_role[]),
    authz.shares_organisation(uuid) TO authenticated, service_role;

-- Whoever creates an organisation becomes its owner; without this nobody could add the first
-- member, since adding members needs an admin.
CREATE FUNCTION authz.add_creator_as_owner() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    IF NEW.created_by IS NOT NULL THEN
        INSERT INTO public.members (organisation_id, user_id, role)
        VALUES (NEW.id, NEW.created_by, 'owner')
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION authz.add_creator_as_owner() FROM PUBLIC;

CREATE TRIGGER organisations_add_creator AFTER INSERT ON public.organisations
    FOR EACH ROW EXECUTE FUNCTION authz.add_creator_as_owner();

-- CRM -------------------------------------------------------------------------------------

CREATE TABLE public.companies (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    name            text        NOT NULL,
    domain          text,
    industry        text,
    owner_id        uuid        REFERENCES auth.users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX companies_organisation_id_idx ON public.companies (organisation_id);
CREATE INDEX companies_owner_id_idx ON public.companies (owner_id);

CREATE TABLE public.contacts (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    company_id      uuid        REFERENCES public.companies (id) ON DELETE SET NULL,
    first_name      text,
    last_name       text,
    email           text,
    phone           text,
    lifecycle_stage text        NOT NULL DEFAULT 'lead'
                    CHECK (lifecycle_stage IN ('lead', 'prospect', 'customer', 'churned')),
    owner_id        uuid        REFERENCES auth.users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contacts_organisation_id_idx ON public.contacts (organisation_id);
CREATE INDEX contacts_company_id_idx ON public.contacts (company_id);
CREATE INDEX contacts_owner_id_idx ON public.contacts (owner_id);
CREATE INDEX contacts_email_idx ON public.contacts (organisation_id, lower(email));

CREATE TABLE public.pipelines (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    name            text        NOT NULL,
    is_default      boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pipelines_organisation_id_idx ON public.pipelines (organisation_id);

CREATE TABLE public.pipeline_stages (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    pipeline_id     uuid        NOT NULL REFERENCES public.pipelines (id) ON DELETE CASCADE,
    name            text        NOT NULL,
    position        integer     NOT NULL,
    win_probability numeric(5, 2) CHECK (win_probability BETWEEN 0 AND 100),
    UNIQUE (pipeline_id, position)
);
CREATE INDEX pipeline_stages_organisation_id_idx ON public.pipeline_stages (organisation_id);
-- pipeline_id is covered by the unique constraint's leading column.

CREATE TABLE public.deals (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    pipeline_id     uuid        NOT NULL REFERENCES public.pipelines (id) ON DELETE CASCADE,
    stage_id        uuid        REFERENCES public.pipeline_stages (id) ON DELETE SET NULL,
    company_id      uuid        REFERENCES public.companies (id) ON DELETE SET NULL,
    contact_id      uuid        REFERENCES public.contacts (id) ON DELETE SET NULL,
    owner_id        uuid        REFERENCES auth.users (id) ON DELETE SET NULL,
    title           text        NOT NULL,
    amount_cents    bigint      CHECK (amount_cents >= 0),
    currency        char(3)     NOT NULL DEFAULT 'EUR',
    expected_close  date,
    status          text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'won', 'lost')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deals_organisation_id_idx ON public.deals (organisation_id);
CREATE INDEX deals_pipeline_id_idx ON public.deals (pipeline_id);
CREATE INDEX deals_stage_id_idx ON public.deals (stage_id);
CREATE INDEX deals_company_id_idx ON public.deals (company_id);
CREATE INDEX deals_contact_id_idx ON public.deals (contact_id);
CREATE INDEX deals_owner_id_idx ON public.deals (owner_id);

CREATE TABLE public.tasks (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    assignee_id     uuid        REFERENCES auth.users (id) ON DELETE SET NULL,
    deal_id         uuid        REFERENCES public.deals (id) ON DELETE CASCADE,
    contact_id      uuid        REFERENCES public.contacts (id) ON DELETE CASCADE,
    title           text        NOT NULL,
    due_at          timestamptz,
    completed_at    timestamptz,
    created_by      uuid        REFERENCES auth.users (id) ON DELETE SET NULL DEFAULT auth.uid(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_organisation_id_idx ON public.tasks (organisation_id);
CREATE INDEX tasks_assignee_id_idx ON public.tasks (assignee_id);
CREATE INDEX tasks_deal_id_idx ON public.tasks (deal_id);
CREATE INDEX tasks_contact_id_idx ON public.tasks (contact_id);
CREATE INDEX tasks_created_by_idx ON public.tasks (created_by);

CREATE TABLE public.notes (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    author_id       uuid        REFERENCES auth.users (id) ON DELETE SET NULL DEFAULT auth.uid(),
    contact_id      uuid        REFERENCES public.contacts (id) ON DELETE CASCADE,
    company_id      uuid        REFERENCES public.companies (id) ON DELETE CASCADE,
    deal_id         uuid        REFERENCES public.deals (id) ON DELETE CASCADE,
    body            text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notes_organisation_id_idx ON public.notes (organisation_id);
CREATE INDEX notes_author_id_idx ON public.notes (author_id);
CREATE INDEX notes_contact_id_idx ON public.notes (contact_id);
CREATE INDEX notes_company_id_idx ON public.notes (company_id);
CREATE INDEX notes_deal_id_idx ON public.notes (deal_id);

-- Content and marketing -------------------------------------------------------------------

CREATE TABLE public.media (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    uploaded_by     uuid        REFERENCES auth.users (id) ON DELETE SET NULL DEFAULT auth.uid(),
    storage_path    text        NOT NULL,
    mime_type       text        NOT NULL,
    size_bytes      bigint      NOT NULL CHECK (size_bytes >= 0),
    alt_text        text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX media_organisation_id_idx ON public.media (organisation_id);
CREATE INDEX media_uploaded_by_idx ON public.media (uploaded_by);

CREATE TABLE public.social_accounts (
    id                      uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id         uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    platform                text        NOT NULL
                            CHECK (platform IN ('instagram', 'facebook', 'linkedin', 'x', 'tiktok', 'youtube')),
    handle                  text        NOT NULL,
    -- Sealed by the server before it is stored; readable only by the organisation's admins.
    access_token_ciphertext bytea,
    token_expires_at        timestamptz,
    connected_by            uuid        REFERENCES auth.users (id) ON DELETE SET NULL DEFAULT auth.uid(),
    created_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organisation_id, platform, handle)
);
-- organisation_id is covered by the unique constraint's leading column.
CREATE INDEX social_accounts_connected_by_idx ON public.social_accounts (connected_by);

CREATE TABLE public.campaigns (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    name            text        NOT NULL,
    objective       text,
    starts_on       date,
    ends_on         date,
    budget_cents    bigint      CHECK (budget_cents >= 0),
    status          text        NOT NULL DEFAULT 'draft'
                    CHECK (status IN ('draft', 'active', 'paused', 'finished')),
    created_by      uuid        REFERENCES auth.users (id) ON DELETE SET NULL DEFAULT auth.uid(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on IS NULL OR starts_on IS NULL OR ends_on >= starts_on)
);
CREATE INDEX campaigns_organisation_id_idx ON public.campaigns (organisation_id);
CREATE INDEX campaigns_created_by_idx ON public.campaigns (created_by);

CREATE TABLE public.content_posts (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id   uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    campaign_id       uuid        REFERENCES public.campaigns (id) ON DELETE SET NULL,
    social_account_id uuid        REFERENCES public.social_accounts (id) ON DELETE SET NULL,
    media_id          uuid        REFERENCES public.media (id) ON DELETE SET NULL,
    author_id         uuid        REFERENCES auth.users (id) ON DELETE SET NULL DEFAULT auth.uid(),
    title             text,
    body              text        NOT NULL DEFAULT '',
    status            text        NOT NULL DEFAULT 'draft'
                      CHECK (status IN ('draft', 'in_review', 'scheduled', 'published', 'failed')),
    scheduled_for     timestamptz,
    published_at      timestamptz,
    external_url      text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX content_posts_organisation_id_idx ON public.content_posts (organisation_id);
CREATE INDEX content_posts_campaign_id_idx ON public.content_posts (campaign_id);
CREATE INDEX content_posts_social_account_id_idx ON public.content_posts (social_account_id);
CREATE INDEX content_posts_media_id_idx ON public.content_posts (media_id);
CREATE INDEX content_posts_author_id_idx ON public.content_posts (author_id);
CREATE INDEX content_posts_due_idx ON public.content_posts (scheduled_for) WHERE status = 'scheduled';

CREATE TABLE public.email_templates (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    name            text        NOT NULL,
    subject         text        NOT NULL,
    body_html       text        NOT NULL,
    body_text       text,
    created_by      uuid        REFERENCES auth.users (id) ON DELETE SET NULL DEFAULT auth.uid(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organisation_id, name)
);
-- organisation_id is covered by the unique constraint's leading column.
CREATE INDEX email_templates_created_by_idx ON public.email_templates (created_by);

-- Billing ---------------------------------------------------------------------------------

CREATE TABLE public.subscriptions (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id    uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    plan               text        NOT NULL,
    status             text        NOT NULL DEFAULT 'trialing'
                       CHECK (status IN ('trialing', 'active', 'past_due', 'cancelled')),
    seats              integer     NOT NULL DEFAULT 1 CHECK (seats > 0),
    current_period_end timestamptz,
    external_ref       text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_organisation_id_idx ON public.subscriptions (organisation_id);

CREATE TABLE public.invoices (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    subscription_id uuid        REFERENCES public.subscriptions (id) ON DELETE SET NULL,
    company_id      uuid        REFERENCES public.companies (id) ON DELETE SET NULL,
    number          text        NOT NULL,
    issued_on       date        NOT NULL DEFAULT current_date,
    due_on          date,
    total_cents     bigint      NOT NULL DEFAULT 0 CHECK (total_cents >= 0),
    currency        char(3)     NOT NULL DEFAULT 'EUR',
    status          text        NOT NULL DEFAULT 'draft'
                    CHECK (status IN ('draft', 'sent', 'paid', 'void')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organisation_id, number)
);
-- organisation_id is covered by the unique constraint's leading column.
CREATE INDEX invoices_subscription_id_idx ON public.invoices (subscription_id);
CREATE INDEX invoices_company_id_idx ON public.invoices (company_id);

CREATE TABLE public.invoice_lines (
    id               uuid    PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id  uuid    NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    invoice_id       uuid    NOT NULL REFERENCES public.invoices (id) ON DELETE CASCADE,
    description      text    NOT NULL,
    quantity         numeric(12, 2) NOT NULL DEFAULT 1,
    unit_price_cents bigint  NOT NULL CHECK (unit_price_cents >= 0)
);
CREATE INDEX invoice_lines_organisation_id_idx ON public.invoice_lines (organisation_id);
CREATE INDEX invoice_lines_invoice_id_idx ON public.invoice_lines (invoice_id);

CREATE TABLE public.usage_events (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    user_id         uuid        REFERENCES auth.users (id) ON DELETE SET NULL DEFAULT auth.uid(),
    kind            text        NOT NULL,
    quantity        numeric     NOT NULL DEFAULT 1,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    properties      jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX usage_events_organisation_id_idx ON public.usage_events (organisation_id, occurred_at);
CREATE INDEX usage_events_user_id_idx ON public.usage_events (user_id);

-- Operations ------------------------------------------------------------------------------

CREATE TABLE public.audit_log (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    actor_id        uuid        REFERENCES auth.users (id) ON DELETE SET NULL,
    action          text        NOT NULL,
    subject_table   text,
    subject_id      text,
    details         jsonb       NOT NULL DEFAULT '{}',
    occurred_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_organisation_id_idx ON public.audit_log (organisation_id, occurred_at);
CREATE INDEX audit_log_actor_id_idx ON public.audit_log (actor_id);

CREATE TABLE public.webhooks (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id    uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    target_url         text        NOT NULL CHECK (target_url ~ '^https?://'),
    events             text[]      NOT NULL DEFAULT '{}',
    -- Used to sign deliveries; readable only by the organisation's admins.
    signing_secret     text        NOT NULL DEFAULT encode(extensions.gen_random_bytes(32), 'hex'),
    is_active          boolean     NOT NULL DEFAULT true,
    last_delivery_at   timestamptz,
    created_by         uuid        REFERENCES auth.users (id) ON DELETE SET NULL DEFAULT auth.uid(),
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_organisation_id_idx ON public.webhooks (organisation_id);
CREATE INDEX webhooks_created_by_idx ON public.webhooks (created_by);

CREATE TABLE public.automations (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organisation_id uuid        NOT NULL REFERENCES public.organisations (id) ON DELETE CASCADE,
    name            text        NOT NULL,
    trigger_kind    text        NOT NULL CHECK (trigger_kind IN ('schedule', 'event', 'webhook')),
    trigger_config  jsonb       NOT NULL DEFAULT '{}',
    actions         jsonb       NOT NULL DEFAULT '[]',
    webhook_id      uuid        REFERENCES public.webhooks (id) ON DELETE SET NULL,
    email_template_id uuid      REFERENCES public.email_templates (id) ON DELETE SET NULL,
    is_enabled      boolean     NOT NULL DEFAULT false,
    last_run_at     timestamptz,
    created_by      uuid        REFERENCES auth.users (id) ON DELETE SET NULL DEFAULT auth.uid(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX automations_organisation_id_idx ON public.automations (organisation_id);
CREATE INDEX automations_webhook_id_idx ON public.automations (webhook_id);
CREATE INDEX automations_email_template_id_idx ON public.automations (email_template_id);
CREATE INDEX automations_created_by_idx ON public.automations (created_by);

CREATE TABLE public.settings (
    organisation_id uuid        PRIMARY KEY REFERENCES public.organisations (id) ON DELETE CASCADE,
    brand_colour    text        CHECK (brand_colour ~ '^#[0-9a-fA-F]{6}$'),
    locale          text        NOT NULL DEFAULT 'en',
    timezone        text        NOT NULL DEFAULT 'UTC',
    preferences     jsonb       NOT NULL DEFAULT '{}',
    updated_by      uuid        REFERENCES auth.users (id) ON DELETE SET NULL DEFAULT auth.uid(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX settings_updated_by_idx ON public.settings (updated_by);

-- updated_at maintenance ------------------------------------------------------------------

CREATE TRIGGER organisations_updated_at BEFORE UPDATE ON public.organisations
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER profiles_updated_at BEFORE UPDATE ON public.profiles
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER companies_updated_at BEFORE UPDATE ON public.companies
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER contacts_updated_at BEFORE UPDATE ON public.contacts
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER deals_updated_at BEFORE UPDATE ON public.deals
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER tasks_updated_at BEFORE UPDATE ON public.tasks
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER notes_updated_at BEFORE UPDATE ON public.notes
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER campaigns_updated_at BEFORE UPDATE ON public.campaigns
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER content_posts_updated_at BEFORE UPDATE ON public.content_posts
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER email_templates_updated_at BEFORE UPDATE ON public.email_templates
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER subscriptions_updated_at BEFORE UPDATE ON public.subscriptions
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER automations_updated_at BEFORE UPDATE ON public.automations
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER settings_updated_at BEFORE UPDATE ON public.settings
    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

-- Row level security ----------------------------------------------------------------------
-- `(SELECT auth.uid())` rather than `auth.uid()`: evaluated once per statement, not per row.

ALTER TABLE public.organisations   ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.members         ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.profiles        ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.companies       ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.contacts        ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.pipelines       ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.pipeline_stages ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.deals           ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tasks           ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notes           ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.media           ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.social_accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.campaigns       ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.content_posts   ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.email_templates ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.subscriptions   ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.invoices        ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.invoice_lines   ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.usage_events    ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.audit_log       ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.webhooks        ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.automations     ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.settings        ENABLE ROW LEVEL SECURITY;

-- organisations: members read; any signed-in user may create one (and becomes its owner);
-- admins rename; only owners delete.
CREATE POLICY organisations_select ON public.organisations FOR SELECT TO authenticated
    USING (authz.is_member(id));
CREATE POLICY organisations_insert ON public.organisations FOR INSERT TO authenticated
    WITH CHECK (created_by = (SELECT auth.uid()));
CREATE POLICY organisations_update ON public.organisations FOR UPDATE TO authenticated
    USING (authz.has_role(id, '{owner,admin}')) WITH CHECK (authz.has_role(id, '{owner,admin}'));
CREATE POLICY organisations_delete ON public.organisations FOR DELETE TO authenticated
    USING (authz.has_role(id, '{owner}'));

-- members: fellow members read the roster; admins manage it; anyone may leave.
CREATE POLICY members_select ON public.members FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY members_insert ON public.members FOR INSERT TO authenticated
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin}'));
CREATE POLICY members_update ON public.members FOR UPDATE TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'))
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin}'));
CREATE POLICY members_delete ON public.members FOR DELETE TO authenticated
    USING (user_id = (SELECT auth.uid()) OR authz.has_role(organisation_id, '{owner,admin}'));

-- profiles: your own, and those of people you work with.
CREATE POLICY profiles_select ON public.profiles FOR SELECT TO authenticated
    USING (id = (SELECT auth.uid()) OR authz.shares_organisation(id));
CREATE POLICY profiles_insert ON public.profiles FOR INSERT TO authenticated
    WITH CHECK (id = (SELECT auth.uid()));
CREATE POLICY profiles_update ON public.profiles FOR UPDATE TO authenticated
    USING (id = (SELECT auth.uid())) WITH CHECK (id = (SELECT auth.uid()));

-- Working data: members (not viewers) write, members read, admins delete.
CREATE POLICY companies_select ON public.companies FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY companies_write ON public.companies FOR INSERT TO authenticated
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin,member}'));
CREATE POLICY companies_update ON public.companies FOR UPDATE TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin,member}'))
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin,member}'));
CREATE POLICY companies_delete ON public.companies FOR DELETE TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'));

CREATE POLICY contacts_select ON public.contacts FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY contacts_insert ON public.contacts FOR INSERT TO authenticated
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin,member}'));
CREATE POLICY contacts_update ON public.contacts FOR UPDATE TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin,member}'))
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin,member}'));
CREATE POLICY contacts_delete ON public.contacts FOR DELETE TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'));

CREATE POLICY pipelines_select ON public.pipelines FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY pipelines_manage ON public.pipelines FOR ALL TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'))
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin}'));

CREATE POLICY pipeline_stages_select ON public.pipeline_stages FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY pipeline_stages_manage ON public.pipeline_stages FOR ALL TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'))
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin}'));

CREATE POLICY deals_select ON public.deals FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY deals_insert ON public.deals FOR INSERT TO authenticated
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin,member}'));
CREATE POLICY deals_update ON public.deals FOR UPDATE TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin,member}'))
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin,member}'));
CREATE POLICY deals_delete ON public.deals FOR DELETE TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'));

CREATE POLICY tasks_select ON public.tasks FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY tasks_insert ON public.tasks FOR INSERT TO authenticated
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin,member}'));
CREATE POLICY tasks_update ON public.tasks FOR UPDATE TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin,member}'))
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin,member}'));
CREATE POLICY tasks_delete ON public.tasks FOR DELETE TO authenticated
    USING (created_by = (SELECT auth.uid()) OR authz.has_role(organisation_id, '{owner,admin}'));

-- notes: authors edit their own.
CREATE POLICY notes_select ON public.notes FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY notes_insert ON public.notes FOR INSERT TO authenticated
    WITH CHECK (author_id = (SELECT auth.uid())
                AND authz.has_role(organisation_id, '{owner,admin,member}'));
CREATE POLICY notes_update ON public.notes FOR UPDATE TO authenticated
    USING (author_id = (SELECT auth.uid())) WITH CHECK (author_id = (SELECT auth.uid()));
CREATE POLICY notes_delete ON public.notes FOR DELETE TO authenticated
    USING (author_id = (SELECT auth.uid()) OR authz.has_role(organisation_id, '{owner,admin}'));

CREATE POLICY media_select ON public.media FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY media_insert ON public.media FOR INSERT TO authenticated
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin,member}'));
CREATE POLICY media_delete ON public.media FOR DELETE TO authenticated
    USING (uploaded_by = (SELECT auth.uid()) OR authz.has_role(organisation_id, '{owner,admin}'));

-- social_accounts hold sealed tokens: admins only.
CREATE POLICY social_accounts_admin ON public.social_accounts FOR ALL TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'))
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin}'));

CREATE POLICY campaigns_select ON public.campaigns FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY campaigns_insert ON public.campaigns FOR INSERT TO authenticated
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin,member}'));
CREATE POLICY campaigns_update ON public.campaigns FOR UPDATE TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin,member}'))
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin,member}'));
CREATE POLICY campaigns_delete ON public.campaigns FOR DELETE TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'));

CREATE POLICY content_posts_select ON public.content_posts FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY content_posts_insert ON public.content_posts FOR INSERT TO authenticated
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin,member}'));
CREATE POLICY content_posts_update ON public.content_posts FOR UPDATE TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin,member}'))
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin,member}'));
CREATE POLICY content_posts_delete ON public.content_posts FOR DELETE TO authenticated
    USING (author_id = (SELECT auth.uid()) OR authz.has_role(organisation_id, '{owner,admin}'));

CREATE POLICY email_templates_select ON public.email_templates FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY email_templates_manage ON public.email_templates FOR ALL TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'))
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin}'));

-- Billing is written by the server (service_role); admins read it.
CREATE POLICY subscriptions_select ON public.subscriptions FOR SELECT TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'));
CREATE POLICY invoices_select ON public.invoices FOR SELECT TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'));
CREATE POLICY invoice_lines_select ON public.invoice_lines FOR SELECT TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'));

-- usage_events: members record their own usage and read the organisation's.
CREATE POLICY usage_events_select ON public.usage_events FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY usage_events_insert ON public.usage_events FOR INSERT TO authenticated
    WITH CHECK (user_id = (SELECT auth.uid()) AND authz.is_member(organisation_id));

-- audit_log: append-only from the server; admins read it.
CREATE POLICY audit_log_select ON public.audit_log FOR SELECT TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'));

-- webhooks hold signing secrets: admins only.
CREATE POLICY webhooks_admin ON public.webhooks FOR ALL TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'))
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin}'));

CREATE POLICY automations_select ON public.automations FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY automations_manage ON public.automations FOR ALL TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'))
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin}'));

CREATE POLICY settings_select ON public.settings FOR SELECT TO authenticated
    USING (authz.is_member(organisation_id));
CREATE POLICY settings_manage ON public.settings FOR ALL TO authenticated
    USING (authz.has_role(organisation_id, '{owner,admin}'))
    WITH CHECK (authz.has_role(organisation_id, '{owner,admin}'));

-- The anonymous role reads nothing here even if a policy is added by mistake later.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM anon;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM anon;

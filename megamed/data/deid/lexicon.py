"""Word lists: census first names and surnames, English words (see lexicon/SOURCES.md), and the
clinical vocabulary that keeps eponyms, drugs and abbreviations from being taken for names."""
from __future__ import annotations

import bisect
import functools
import os

_DIR = os.path.join(os.path.dirname(__file__), "lexicon")


def _read(name: str) -> list[str]:
    with open(os.path.join(_DIR, name), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


@functools.lru_cache(maxsize=None)
def first_names() -> frozenset[str]:
    return frozenset(_read("first_names.txt")) - NOT_NAMES


@functools.lru_cache(maxsize=None)
def surname_rank() -> dict[str, int]:
    """Lower-case surname -> census rank (1 = most frequent)."""
    return {name: i + 1 for i, name in enumerate(_read("surnames.txt")) if name not in NOT_NAMES}


@functools.lru_cache(maxsize=None)
def english_words() -> frozenset[str]:
    return frozenset(_read("english_words.txt")) | MEDICAL_WORDS


@functools.lru_cache(maxsize=None)
def world_first_names() -> frozenset[str]:
    """Given names of many origins (Faker's person providers) that the US census lists lack;
    a name only when capitalised (lower case, some are words in other languages)."""
    return frozenset(_read("world_first_names.txt")) - NOT_NAMES


@functools.lru_cache(maxsize=None)
def world_surnames() -> frozenset[str]:
    return frozenset(_read("world_surnames.txt")) - NOT_NAMES


@functools.lru_cache(maxsize=None)
def foreign_words() -> frozenset[str]:
    """Common Spanish, Portuguese, French and Italian words (bilingual notes): "los días",
    "casa" are words, not the census surnames Dias and Casa."""
    return frozenset(_read("foreign_words.txt"))


@functools.lru_cache(maxsize=None)
def places() -> frozenset[str]:
    """Countries, states and provinces, and the cities of the time-zone database that are no
    common given name or surname ("Louisiana", "Sonora", "Montreal"): a place, not a person."""
    return frozenset(_read("places.txt"))


@functools.lru_cache(maxsize=None)
def _sorted_words() -> tuple[str, ...]:
    return tuple(sorted(english_words()))


def starts_a_word(low: str) -> bool:
    """`low` is the start of a longer English word: a clipped word ("eval", "rec", "dispo"),
    as a name in no list rarely is."""
    words = _sorted_words()
    k = bisect.bisect_right(words, low)
    return k < len(words) and words[k].startswith(low)


@functools.lru_cache(maxsize=None)
def romanised_syllables() -> frozenset[str]:
    """Syllables of romanised Korean and Chinese given names ("ji", "woo", "seo", "yeon",
    "chia", "hsin"): "Ji-woo", "Shu-fen" are given names written syllable-hyphen-syllable."""
    return frozenset(_read("romanised_syllables.txt"))


@functools.lru_cache(maxsize=None)
def surrogate_first() -> tuple[str, ...]:
    """Given names that are not English words (a surrogate must not read as a word)."""
    words = english_words()
    return tuple(n for n in _read("first_names.txt")[:3000] if n not in words and len(n) > 2)


@functools.lru_cache(maxsize=None)
def surrogate_last() -> tuple[str, ...]:
    words = english_words()
    return tuple(n for n in _read("surnames.txt")[500:8000] if n not in words and len(n) > 3)


# Titles and credentials that make the next / previous capitalised words a person's name.
TITLES = frozenset("""dr dr. doctor mr mr. mrs mrs. ms ms. miss mx mx. prof prof. professor
drs drs. sister nurse mister missus officer ofc sgt sergeant detective deputy trooper rev
reverend pastor rabbi sr sra srta señor señora herr frau monsieur madame mme mlle signor
signora dott dra""".split())
CREDENTIALS = frozenset("""md m.d. do d.o. rn r.n. np n.p. pa pa-c phd ph.d. dds dmd lpn cnm crna
msw lcsw pharmd rph mbbs frcp facc facs facp dnp aprn fnp fnp-c anp acnp pt dpt ot rrt rt
cna bsn msn dvm dds dmd od au aud ccc-slp ccc-a rpsgt pmhnp pmhnp-bc nnp nnp-bc fnp-bc anp-bc
agacnp-bc agpcnp-bc acnp-bc whnp-bc cnm crnp emt emt-b emt-p emt-i nremt franzco fracs fracp
fracgp frcs frcse frcsed frcpc frcpath frcr mrcp mrcs mrcgp frcog mrcog frcpsych frcem ccrn
otr otr/l cota slp-cca rdn ldn bcba lmft lpc licsw lcpc cdces rph cpht rdcs rvt rrt-nps arrt
rtt cnor cpnp ibclc""".split())

MONTHS = {"january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7,
          "august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
          "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
          "sept": 9, "oct": 10, "nov": 11, "dec": 12}
WEEKDAYS = frozenset("""monday tuesday wednesday thursday friday saturday sunday mon tue tues wed
thu thur thurs fri sat sun""".split())

# Eponyms: a person's name that names a disease, sign, score or device, not a person here.
EPONYMS = frozenset("""addison adie alzheimer apgar arnold asperger austin babinski baker
bankart barre barrett bartter barton bazett behcet bell bence bennett berger billroth bishop
blalock blatchford boerhaave bosniak bowen braden brodie broca brudzinski brugada budd burkitt
caprini charcot chiari child chvostek churg clark cockcroft colles conn cooley cornell crigler
crohn cullen curling cushing dandy danlos dejerine doppler dressler dubin duchenne dukes
dupuytren durie ebstein edinger ehlers eisenmenger ellison erb ewing fabry fallot fanconi
fick fleischner flint foley folstein fontan forrest framingham fridericia friedewald friedreich
galeazzi ganz garden gaucher gault geneva gerota gilbert gitelman glasgow gleason glenn
goodpasture graafian graves guillain hamman hampton hartmann hashimoto heberden hegar henle
hirschsprung hodgkin holter homan homans horner howell huntington hurler jaccoud janeway
jolly kaposi karnofsky kawasaki kehr kerley kernig killip klinefelter klumpke kocher korotkoff
korsakoff krukenberg kussmaul lachman lambert langerhans lanza levine lewy libman liddle
lisfranc ludwig lyme mallampati mallory marfan mcburney mcmurray meckel meniere merkel mirizzi
mobitz monteggia morton murphy najjar neer nissen noonan norwood osborn osler paget pancoast
parkinson peyronie pfannenstiel phalen pick plummer pott prinzmetal pugh purkinje ramsay
ranson rankin raynaud reed reiter rendu reynolds riedel ringer romberg romhilt rotor roux rovsing
salter schatzki schwartz segond sengstaken sheehan sjogren sokolow spetzler starling sternberg
stevens still stokes swan takayasu takotsubo tanner taussig tay tinel todd tourette trendelenburg
trousseau turner valsalva virchow waldenstrom wallenberg wegener weiss wells wenckebach
wernicke whipple wilms wilson wolff zenker zollinger cheyne hill sachs bruce tzanck gram wright
giemsa papanicolaou ziehl neelsen ames stanford debakey hunt hess fisher richmond riker katz
barthel lawton lugano rai binet sokal gottron ortolani barlow thompson hawkins neer
jobe speed yergason finkelstein allen adson kiesselbach kiesselbach's luschka magendie monro
sylvius willis wharton stensen bartholin skene cowper douglas morison hesselbach poupart
hoehn yahr roth deauville nottingham columbia merkel brackmann hoffmann janeway
savary maloney penrose blakemore bovie metzenbaum babcock allis
tyrer cuzick gail claus morse jamar kapandji lichtenstein shouldice bassini mcvay hartmann
toupet heller kasai ladd ramstedt swenson soave duhamel puestow beger kausch mckeown
latarjet ponseti ilizarov masquelet langenbeck hardinge charnley womac oswestry
apley thessaly lachman finkelstein durkan froment wartenberg roos spurling lhermitte
hallpike epley semont rinne schirmer seidel amsler ishihara snellen jaeger goldmann
hirschberg bielschowsky maddox titmus rovsing psoas obturator lowenberg biot duroziez
quincke traube musset dubowitz finnegan naegele
 rockall centor mcisaac khorana nyha timi hendrich tinetti
waterlow yesavage zung epds crafft ciwa aldrete cormack lehane detsky breslow fuhrman
isup zubrod lansky recist mandard dworak risser lenke gustilo pauwels schatzker
lauge salter lopresti maisonneuve tillaux chopart bohler gissane kellgren
outerbridge tonnis paprosky kinyoun gomori grocott warthin verhoeff gieson perls alcian
mucicarmine coombs kleihauer betke schilling widal bunnell monospot mantoux quantiferon
broviac malecot pezzer hemovac pleurevac sengstaken dobhoff corpak yankauer 
satinsky bookwalter weitlaner gelpi volkmann hohmann
steinmann kirschner schanz pavlik aircast sarmiento minerva venturi ambu bipap
rastelli jatene senning blake lund browder sprotte tuohy
ballard silverman andersen apfel fitzpatrick semmes weinstein webster pencan
quincke sprotte macintosh glidescope mcgrath guedel yale bristol aldrete
ramsay richmond bromage lund mallampati wilkinson""".split())

# Eponyms written alone that name a procedure, test, score or instrument far more often than a
# person in a note ("Whipple planned", "grip (Jamar)", "repair (Lichtenstein)", "Morse 65"):
# vetoed unless a title comes first ("Dr. Whipple"). Compiled by hand from the standard
# procedures, instruments and scales of surgery, orthopaedics, nursing and risk assessment.
PROCEDURE_EPONYMS = frozenset("""whipple nissen toupet lichtenstein shouldice bassini hartmann
jamar kapandji puestow latarjet ponseti ilizarov ramstedt kasai tyrer cuzick mallampati
cormack caprini khorana kellgren outerbridge gustilo schatzker pauwels ziehl grocott gomori
mucicarmine kinyoun quantiferon mantoux monospot yankauer dobhoff corpak pleurevac hemovac
broviac bookwalter weitlaner gelpi metzenbaum satinsky steinmann kirschner schanz pavlik
aircast sarmiento venturi bipap ambu epley semont hallpike spurling lhermitte finkelstein
phalen tinel durkan froment apley thessaly lachman yergason womac oswestry tinetti hendrich
waterlow morse braden apgar  dubowitz finnegan naegele ranson rockall blatchford
centor mcisaac killip nyha timi nihss barthel lawton folstein yesavage zung epds ciwa
aldrete detsky gleason breslow fuhrman isup karnofsky zubrod lansky recist mandard dworak
risser lenke sprotte tuohy apfel semmes pencan bromage""".split())

# Companies and brands of devices, drugs, dental materials, insurers and pharmacies:
# capitalised, often census surnames (Abbott, Stryker), not a person in a note ("(Stryker)",
# "Medtronic Azure XT DR"). Compiled by hand from makers named on device labels and formularies.
ORGANISATIONS = frozenset("""medtronic stryker zimmer biomet depuy synthes arthrex conmed olympus
storz biotronik livanova dexcom insulet omnipod baxter fresenius hospira becton philips
siemens hologic cepheid genentech novartis pfizer moderna janssen sanofi astrazeneca gilead
amgen biogen regeneron boehringer ingelheim takeda teva mylan viatris sandoz cipla
glaxosmithkline novo nordisk abbvie allergan alcon bausch cochlear phonak oticon resmed
respironics invacare walgreens cvs walmart costco kroger publix safeway caremark optumrx
optum humana aetna cigna anthem unitedhealthcare medicaid medicare tricare bluecross
blueshield molina centene wellcare ambetter cavit ketac vitrebond dycal durelon tempbond
septocaine buick chevrolet chevy nissan hyundai subaru mazda acura
volkswagen audi bmw tesla jeep chrysler cadillac gmc volvo kia hill-rom hillrom
kaiser permanente geisinger ochsner provation medi-cal johns kettering montefiore hackensack
maimonides scripps dana-farber barnes-jewish cedars-sinai harborview shands""".split())


# Nouns that turn a preceding capitalised word into an eponym: "Bell's palsy", "Still disease".
EPONYM_HEADS = frozenset("""disease diseases syndrome syndromes sign signs test tests palsy
lymphoma sarcoma tumor tumour criteria criterion score scores scale classification
class grade stage staging maneuver manoeuvre procedure operation repair fracture ulcer ulcers
reflex phenomenon triad catheter tube node nodes cyst cysts law formula equation method
position stockings line lines angle space pouch canal duct duct's gland glands cell cells
body bodies nodule nodules infarct infarction esophagus block lesion lesions arthritis
disorder deformity contracture dementia chorea ataxia dystrophy anomaly malformation
aneurysm thyroiditis encephalopathy neuroma node's murmur rhythm wave waves pattern bundle
ring rings tear lavage splint view views protocol regimen solution lactated bag spots spot
dilator dilators drain drains clamp clamps scissors forceps retractor level prosthesis
needle valve stent nail""".split())

# Clinical words the SCOWL list lacks but the census surname list has (or might).
MEDICAL_WORDS = frozenset("""pt pts hx sx dx tx rx fx yo y/o bp hr rr spo2 sats temp wbc rbc hgb
hct plt bun cr na k cl co2 ast alt alp inr ptt ldl hdl tsh ekg ecg cxr ct mri us pet abd
neuro cardio gi gu ent heent perrla nad wnl prn bid tid qid qd qhs po iv im sq sc npo
lasix coumadin norvasc lopressor toprol coreg cozaar diovan zestril lisinopril metoprolol
eliquis xarelto pradaxa plavix lipitor crestor zocor lovenox heparin tylenol motrin advil
aleve bactrim cipro levaquin flagyl zosyn vancomycin vanco lantus humalog novolog protonix
prilosec zofran reglan dilaudid percocet norco vicodin keflex augmentin zyrtec claritin
benadryl ativan klonopin seroquel zyprexa risperdal abilify lexapro prozac wellbutrin
cymbalta effexor neurontin lyrica aldactone jardiance januvia glucophage synthroid levoxyl
flomax proscar detrol colace senna miralax dulcolax imdur nitrostat lanoxin cordarone
pacerone multaq entresto farxiga ozempic trulicity victoza humira enbrel remicade keytruda
opdivo herceptin avastin rituxan gleevec decadron medrol kenalog xanax valium haldol
ambien keppra dilantin depakote tegretol lamictal topamax sinemet aricept namenda allegra
celebrex mobic ultram narcan suboxone chantix singulair advair symbicort spiriva albuterol
ventolin proventil atrovent duoneb solumedrol prednisone warfarin apixaban rivaroxaban
insulin metformin glipizide aspirin asa nitro nitroglycerin morphine fentanyl versed propofol
ketamine toradol ceftriaxone rocephin zithromax azithromycin doxycycline amoxicillin
cefazolin ancef unasyn meropenem cefepime linezolid zyvox tamiflu paxlovid remdesivir
echo tte tee cath pci cabg stemi nstemi afib aflutter svt vt vf chf copd cad ckd esrd dm htn
hld osa gerd uti dvt cva tia mi ards sirs aki pna mrsa vre cdiff covid hiv hcv hbv
ngt ogt picc cvc art tpn icu micu sicu ccu pacu ed er or ir ob gyn peds nicu picu sob cp
pnd le le's rle lle rue lue rlq ruq llq luq lmp edd ga g1p0 neg pos nl abnl
lt rt bilat hpi pmh psh fh sh ros pe a/p cc mdm dnr dni pola molst hcp poa
qtc qrs pr st axis sinus mrn dob dos ssn acct fin npi dea mr pcp attn re cc bmi
x-ray xray x-rays lvef rvef lvh rvh tapse bnp
rales rhonchi crackles brady tachy pulm cardiol neph nephro heme onc endo rheum derm ortho uro gyn psych mets
drs psyd edd drph abpp chpn ccrn cen ocn bcps cde cdces lmft lpc licsw otr slp rdn atc ntprobnp troponin trop egfr a1c hba1c bi-rads pi-rads li-rads ti-rads
rad rads onc hosp dispo mech labo ab abx""".split())

# Census entries that are almost never a name in a clinical note (abbreviations, units).
NOT_NAMES = frozenset("""officer sergeant detective deputy trooper reverend pastor rabbi aide
mg ml mm cm kg lb oz mcg meq mmol iu hr hrs min sec pt pts dr mr ms
mrs md rn np pa do of in on at to the and or for with by as is it be an no not yo yr yrs
ct mri us ekg ecg ed er icu or ir ob gi gu iv im po pr qd bid tid qid prn npo
dose doses unit units left right mid upper lower normal women men""".split())

# Languages, nationalities, faiths, countries: capitalised but not names by themselves ("(Spanish)");
# some are names too (Christian, English), so only context makes them one.
PEOPLES = frozenset("""spanish english french german italian portuguese chinese mandarin
cantonese japanese korean vietnamese russian arabic hindi haitian creole polish greek somali
african american asian hispanic latino latina caucasian european muslim christian jewish
catholic baptist methodist jehovah mormon lutheran presbyterian hindu buddhist sikh
america canada mexico brazil argentina colombia peru chile cuba haiti jamaica england britain
scotland wales ireland france germany italy spain portugal netherlands belgium denmark norway
sweden finland poland ukraine russia greece turkey israel egypt nigeria ghana kenya ethiopia
somalia india pakistan bangladesh china japan korea vietnam philippines thailand australia
dutch swedish norwegian danish finnish thai filipino tagalog farsi persian urdu bengali punjabi
gujarati tamil telugu swahili amharic tigrinya yoruba igbo hausa hmong khmer burmese nepali
pashto dari kurdish turkish hebrew ukrainian romanian hungarian czech slovak serbian croatian
bosnian albanian armenian brazilian mexican guatemalan salvadoran honduran dominican cuban
jamaican nigerian ghanaian kenyan ethiopian eritrean sudanese congolese afghan iraqi syrian
iranian pakistani indian bangladeshi nepalese tibetan mongolian samoan tongan maori fijian
canadian australian irish scottish welsh british""".split())

# --- context words for the name rules (names.py) ---
FUNCTION_WORDS = frozenset("""a an and or but nor of to in on at by for with from into onto
was is are were be been being has have had will would can could may might should must shall
did does do done not no yes he she his her him hers they them their it its this that these those
who whom which what when where why how today yesterday tomorrow also then here there as if so
per via patient pt pts mr mrs ms dr md rn all any each some such than too very just only
again back up down out over under after before during while since until because about
i me my we our us you your one two three four five six seven eight nine ten""".split())

# Given names that are everyday words in lower-case dictation ("will", "may", "art line").
LOWER_AMBIGUOUS_FIRST = frozenset("""will may mark bill pat sue guy art don gene grant chase page
long rose hope frank joy faith grace dawn ray max jack dean drew case lane miles son
king young major sunny summer autumn april june august star sky river rocky""".split())

LABEL_WORDS = """patient|pt|name|pt name|patient name|seen by|signed by|electronically signed|
signed|dictated by|transcribed by|attending|attending physician|resident|fellow|intern|pcp|
primary care|primary care physician|primary care provider|referring|referring physician|
referring provider|referring md|referred by|cc|dear|sincerely|regards|respectfully|best|thanks|
thank you|surgeon|assistant|anesthesiologist|anesthesia|reviewed by|read by|interpreted by|
verified by|ordered by|approved by|performed by|cosigned by|co-signed by|discussed with|
spoke with|d/w|contact|emergency contact|next of kin|nok|husband|wife|son|daughter|mother|
father|brother|sister|friend|partner|spouse|grandson|granddaughter|grandmother|grandfather|
niece|nephew|caregiver|guardian|accompanied by|boyfriend|girlfriend|fiance|fiancee|aunt|uncle|
cousin|roommate|neighbor|provider|physician|technologist|tech|sonographer|consultant|
consulting|covering|on-call|pharmacist|therapist|chaplain|social worker|case manager|
care coordinator|mom|dad|translator|interpreter|from|to|by|with|per|attn|attention|re|
regarding|signature|dictating on|dictated on|dictation on|call|called|notify|notified|page|
paged|told|informed|asked|met with|visited by|family|inform|contacted|daughters|sons|sisters|
brothers|grandsons|granddaughters|grandchildren|children|parents|nieces|nephews|cousins|
friends|stepson|stepdaughter|stepmother|stepfather|neighbour|stepbrother|stepsister|half brother|half sister|great uncle|great aunt|
grand niece|grand nephew|grandniece|grandnephew|
grandma|grandpa|grandparents|great grandmother|great grandfather|great grandson|great granddaughter|
mother in law|father in law|son in law|daughter in law|brother in law|sister in law|godmother|
godfather|godson|goddaughter|twin|twin brother|twin sister|ex husband|ex wife|
abuela|abuelo|abuelita|abuelito|mama|papa|hija|hijo|esposa|esposo|hermana|hermano|tia|tio|
nieta|nieto|prima|primo|sobrina|sobrino|madre|padre|suegra|suegro|nonna|nonno|oma|opa|
bubbe|zayde|babcia|dziadek|lola|lolo|nana|auntie|nan|nanna|gran|granny|grandad|granddad|buddy|initials|transcribed|transcriptionist|typed|
typist|minutes by|entered by|note by|scribe|scribed by|witness|witnessed by|hi|hello|gp|
registrar|sho|matron|midwife|physio|physiotherapist|dietitian|dietician|keyworker|key worker|
health visitor|cheers|warmly|cordially|yours truly|attendees|attendance|participants|care team|team members|author|cosigner|co-signer|responsible party|guarantor|subscriber|policy holder|
attested|attested by|countersigned|countersigned by|
patient is|pt is|name is|patient name is|preferred name|aka|a k a|goes by|known as|nickname|

this is""".replace("\n", "").split("|")

# Words that end the name of an instrument whose eponym stands two or three words before
# ("Harris Hip Score", "Morse Fall Scale", "Glasgow Coma Scale").
SCORE_HEADS = frozenset("score scale scales index criteria classification questionnaire inventory".split())

# Words before "MR"/"MS" that make it a valve lesion ("mild MR", "severe MS"), not a title.
SEVERITY_WORDS = frozenset("""mild moderate severe trace trivial significant no functional
residual chronic acute ischemic rheumatic mild-moderate moderate-severe minimal""".split())

# Lower-case words after a capitalised word that make it the eponym of a test or manoeuvre
# ("Simmonds test", "Thompson squeeze"), not a person ("Jones Procedure:" is a header).
TEST_HEADS = frozenset("""test tests maneuver manoeuvre score scale procedure operation repair
classification reflex view criteria sign signs squeeze prosthesis needle needles valve
catheter drain drains stent nail splint brace dynamometer formula chart maneuvers
manoeuvres protocol""".split())

# Articles, pronouns and prepositions of Spanish, Portuguese, Italian and French: words even
# when capitalised at a sentence start ("Su esposo Julio"), though a few are census names.
FOREIGN_FUNCTION_WORDS = frozenset("""su sus mi mis tu tus el la los las lo le les del al un
una unos unas con sin por para que se en es ni da do na em ao os il di ed ha era hay muy""".split())

EPONYM_VETO_HEADS = frozenset("disease syndrome sign palsy lymphoma sarcoma criteria".split())

FACILITY_HEADS = frozenset("""hospital hospitals clinic clinics center centre medical health
healthcare cardiology associates institute university college school pharmacy labs laboratory
laboratories foundation memorial infirmary hospice rehab rehabilitation nursing physicians
group practice partners community medicine surgery pediatrics elementary academy
assisted living shelter outreach services ministries mission ambulance manor lodge villa
village terrace gardens behavioral psychiatric orthopedics oncology imaging radiology
diagnostics dental dentistry pharmaceuticals therapeutics industries manufacturing
fabrication steel inc llc corp corporation company church temple mosque synagogue
residence residences apartments towers plaza""".split())

# Words that end the name of a firm whose partners' names come before them ("Hargrove,
# Pelletier & Associates", "Dunmore Logistics"): used by the name rules only.
ORGANISATION_HEADS = frozenset("""associates llp pllc ltd logistics law attorneys solicitors
consulting solutions systems technologies enterprises holdings bank insurance motors
construction transport trucking realty properties""".split())

# Words that name a place in a hospital when a number follows ("Ward 5", "Bay 3").
HOSPITAL_PLACES = frozenset("ward wards bed bay room pod wing unit floor suite level".split())

# Eponyms that name a device or test far more often than a person in a note ("Foley d/c'd");
# after a title they are names again ("Dr. Foley").
DEVICE_EPONYMS = frozenset("foley holter doppler hickman groshong jackson-pratt".split())

PRONOUNS = frozenset("i me my he she him his her hers they them their we us our you your it its".split())

PARTICLES = frozenset("van von de der del della da di la le st mac bin ibn al el dos das du "
                      "den ten ter zu af bint abu ap binti mc los las".split())

# Verbs whose object is often a person: the next capitalised census name is one.
OBJECT_VERBS = frozenset("""call called notify notified page paged told informed asked
met with visited by family inform informed contact contacted""".split())

# Labels after which even a lower-case token that is not a word is a name ("seen by kowalczyk").
VOUCHING_LABELS = frozenset(["dictating on", "dictated on", "dictation on", "seen by",
                             "dictated by", "transcribed by", "reviewed by", "interpreted by",
                             "signed by", "dear", "sincerely", "cc", "name", "patient name",
                             "pt name", "attending", "pcp"])

RELATIVES = frozenset("""husband wife son daughter mother father brother sister friend partner
spouse grandson granddaughter grandmother grandfather niece nephew caregiver guardian boyfriend
girlfriend aunt uncle cousin roommate neighbor mom dad daughters sons sisters brothers grandsons
granddaughters grandchildren children parents nieces nephews cousins friends stepson stepdaughter
stepmother stepfather neighbour stepbrother stepsister fiance fiancee fiancé fiancée
grandma grandpa grandparents godmother godfather godson goddaughter twin abuela abuelo abuelita
abuelito mama papa hija hijo esposa esposo hermana hermano tia tio nieta nieto prima primo
sobrina sobrino madre padre suegra suegro nonna nonno oma opa bubbe zayde babcia dziadek lola
lolo nana auntie nan nanna gran granny grandad granddad nanny buddy""".split()) | frozenset("""mother in law|father in law|son in law|
daughter in law|brother in law|sister in law|half brother|half sister|great uncle|great aunt|
great grandmother|great grandfather|great grandson|great granddaughter|twin brother|
twin sister|ex husband|ex wife|grand niece|grand nephew|grandniece|grandnephew""".replace("\n", "").split("|"))

# Labels that a person's initials follow ("Transcribed: tmw", "minutes by jrs", "initials GHB").
INITIALS_LABELS = frozenset("""initials|transcribed|transcriptionist|typed|typist|minutes by|
entered by|note by|scribe|scribed by|transcribed by|typed by|dictated by|signed|signed by|
attested|attested by|countersigned|countersigned by|
cosigned by|co-signed by|reviewed by|witnessed by|per|by""".replace("\n", "").split("|"))

# Short clinical abbreviations that no word list has and a signature label may precede
# ("per GI", "by EMS", "per SW"): not a person's initials.
CLINICAL_ABBREVIATIONS = frozenset("""ems sw cm slp rd dme snf ltc ltach irf aba ent pt ot rt
gi id icu ed er ir or ob np pa md rn lpn cna pcp hcp poa msw rrt crna nsg sw pharm tpn ccm
bmt sicu micu ccu nicu picu pacu cvicu tsicu ems fd pd ekg ecg cxr eeg emg mri mra cta ct
us iv im po sl pr ng og pn dc nsr af ems ins pmd cpt icd drg hcfa cms ama dnr xr ua nm bs fs
pc ac hs kub pft egd ercp mrcp ivp dexa hida uds cbc bmp cmp lft abg vbg ns lr ivf prbc ffp
tte tee cath lab opd ipd ot otr slp speech acog nccn aha acc ats idsa who cdc fda ep hh ps gs
cv cts fm em hm pmr vna hospice ptot cd ud va vamc ehr emr ob gyn hf sae ae mac iddsi""".split())

# Units written after a slash ("IU/ml", "breaths/min"): not a typist's initials.
UNITS = frozenset("ml dl min hr hrs day days wk wks mo yr kg mg mcg ul mm cm hpf lpf sec mol".split())

# Roles after which even a lower-case word in no list is a name ("resident priya").
ROLE_LABELS = frozenset("""resident|fellow|intern|attending|attending physician|surgeon|assistant|
anesthesiologist|technologist|tech|sonographer|consultant|covering|pharmacist|therapist|
chaplain|social worker|case manager|care coordinator|physician|provider|registrar|sho|gp|
midwife|physio|physiotherapist|dietitian|dietician|interpreter|translator|scribe|witness|author|
cosigner|co-signer|pcp|primary care|referring|referring physician|referring provider""".replace("\n", "").split("|"))

# Labels of dictation that a person's (lower-case) name follows ("patient is frank hall").
NAME_IS_LABELS = frozenset(["patient is", "pt is", "name is", "patient name is", "this is"])
